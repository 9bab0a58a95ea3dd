"""`python -m bench.run_all` (`make bench`): run every benchmark and write bench/REPORT.md.

Each benchmark runs as its own process, one after another, so none shares a loop or a cache with
another; each writes bench/results/<name>.json, and the report puts every figure beside the raw
limit measured in the same run, as a ratio, with a description of the machine. A missed goal is
reported, not an error; a benchmark that fails is, and makes the exit status 1.
"""

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from bench.harness import REPO, RESULTS, cpu_times, format_value, machine, machine_busy, redis_cpu_s

REPORT = REPO / "bench" / "REPORT.md"
TIMEOUT_S = 600
QUIET_BUSY = 0.25  # start a benchmark once other work keeps less than this share of the CPUs busy...
QUIET_WAIT_S = 120.0  # ...or after this long, saying so in the report


@dataclass(frozen=True)
class Benchmark:
    name: str
    module: str
    title: str


BENCHMARKS = (
    Benchmark("propagation", "bench.propagation", "Propagation: PUT 2xx to a worker serving the new value"),
    Benchmark("resolution", "bench.resolution", "Resolution: ctx.secrets.X in an execution"),
    Benchmark("put_throughput", "bench.put_throughput", "Durable PUT throughput, 32 clients"),
    Benchmark("webhooks", "bench.webhooks", "Webhook executions through the engine"),
    Benchmark("engine_endpoint", "bench.engine_endpoint", "Engine endpoint: GET /api/engine/{p}/secrets"),
    Benchmark("worker_memory", "bench.worker_memory", "Worker memory: 10,000 projects x 20 secrets"),
    Benchmark("mixed_load", "bench.mixed_load", "Mixed load: 200 clients for 60 s"),
)


@dataclass
class Outcome:
    benchmark: Benchmark
    returncode: int
    seconds: float
    load_before: str
    load_after: str
    result: dict[str, Any] | None
    busy_before: float | None = None  # share of the CPUs busy just before it started (other work on the machine)
    busy_other: float | None = None  # share of the CPUs used during the run by anything but it and Redis


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def wait_for_quiet() -> float:
    """Wait (bounded) until the machine is mostly idle, so other work does not land in the figures."""
    deadline = time.monotonic() + QUIET_WAIT_S
    busy = machine_busy()
    while busy >= QUIET_BUSY and time.monotonic() < deadline:
        print(f"   the machine is {busy:.0%} busy with other work; waiting for it to settle", flush=True)
        time.sleep(4.0)
        busy = machine_busy()
    return busy


def run(benchmark: Benchmark) -> Outcome:
    path = RESULTS / f"{benchmark.name}.json"
    path.unlink(missing_ok=True)
    busy = wait_for_quiet()
    load_before, started = _load(), time.monotonic()
    print(f"== {benchmark.title} (python -m {benchmark.module})", flush=True)
    machine0, ours0, redis0 = cpu_times(), _children_cpu_s(), redis_cpu_s()
    try:
        returncode = subprocess.run([sys.executable, "-m", benchmark.module], cwd=REPO, timeout=TIMEOUT_S).returncode
    except subprocess.TimeoutExpired:
        returncode = -1
    machine1, ours1, redis1 = cpu_times(), _children_cpu_s(), redis_cpu_s()
    others = (machine1[0] - machine0[0]) - (ours1 - ours0) - (redis1 - redis0)
    busy_other = max(0.0, others) / max(1e-9, machine1[1] - machine0[1])
    result = json.loads(path.read_text()) if path.exists() else None
    seconds = time.monotonic() - started
    return Outcome(benchmark, returncode, seconds, load_before, _load(), result, busy, busy_other)


def _children_cpu_s() -> float:
    """CPU seconds of every finished child process tree (the benchmark, its service, its worker)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def earlier(benchmark: Benchmark) -> Outcome:
    """A benchmark left out by --only: its last result, if any, marked as such in the report."""
    path = RESULTS / f"{benchmark.name}.json"
    result = json.loads(path.read_text()) if path.exists() else None
    return Outcome(benchmark, 0 if result else 1, 0.0, "(earlier run)", "(earlier run)", result)


def _ratio(figure: dict[str, Any]) -> str:
    ratio = float(figure["ratio"])
    if figure["unit"] == "requests":  # a count of failed requests beside the requests sent: the error rate
        return f"{ratio:.3%} error rate"
    return f"{ratio:.0%} of raw" if str(figure["unit"]).endswith("/s") else f"{ratio:.2f}x raw"  # a rate, or a time


def _figures_table(outcomes: list[Outcome]) -> list[str]:
    lines = [
        "| figure | value | raw limit (same run) | raw | ratio | goal | met? | other work on the CPUs |",
        "|---|---:|---|---:|---:|---|:---:|---:|",
    ]
    for outcome in outcomes:
        if outcome.result is None:
            lines.append(f"| {outcome.benchmark.title} | failed (exit {outcome.returncode}) | | | | | ✗ | |")
            continue
        for f in outcome.result["figures"]:
            lines.append(
                f"| {f['figure']} | {format_value(f['value'], f['unit'])} | {f['raw_name']} | "
                f"{format_value(f['raw'], f['unit'])} | {_ratio(f)} | {f['goal']} | {'✓' if f['met'] else '✗'} | "
                f"{_share(outcome.busy_other)} |"
            )
    return lines


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def _stats_line(name: str, stats: dict[str, float], unit: str) -> str:
    return (
        f"| {name.strip()} | {stats['p50']:.3f} | {stats['p90']:.3f} | {stats['p99']:.3f} | "
        f"{stats['max']:.3f} | {unit} |"
    )


def _details(outcome: Outcome) -> list[str]:
    result = outcome.result
    lines = [f"### {outcome.benchmark.title}", ""]
    if result is None:
        return [*lines, f"Failed with exit status {outcome.returncode}; see its output above.", ""]
    details: dict[str, Any] = result["details"]
    lines += [
        f"`python -m {outcome.benchmark.module}` · {outcome.seconds:.0f} s · share of the CPUs used by other "
        f"work on the machine: {_share(outcome.busy_before)} just before, {_share(outcome.busy_other)} during "
        f"the run · load average before {outcome.load_before}, after {outcome.load_after}",
        "",
        f"Method: {details.get('method', '')}",
        "",
    ]
    if "propagation_ms" in details:
        lines += ["| measured | p50 | p90 | p99 | max | unit |", "|---|---:|---:|---:|---:|---|"]
        lines.append(_stats_line("propagation (PUT 2xx → worker serves)", details["propagation_ms"], "ms"))
        lines.append(_stats_line("raw XADD → XREAD across processes", details["raw_xadd_xread_ms"], "ms"))
        for part, stats in details["breakdown_ms"].items():
            indent = "↳ " if part.startswith(" ") else ""
            lines.append(_stats_line(indent + part.strip().replace("_", " "), stats, "ms"))
        lines += ["", f"{details['changes']} changes after {details['warmup']} warm-up."]
        if "new_value_came_by" in details:
            came = details["new_value_came_by"]
            lines.append(
                f"The new value came from the change's engine delta in Redis {came['delta']} times, "
                f"by a snapshot fetch from the API {came['fetch']} times."
            )
        if details.get("served_before_2xx"):
            lines.append(
                f"{details['served_before_2xx']} changes were served before the PUT's 2xx reached the client "
                "(the event leaves at commit, beside the response); they count as negative times."
            )
    if "first_use_per_call_us" in details:
        first, raw = details["first_use_per_call_us"], details["raw_decrypt_per_call_us"]
        lines.append(
            f"Call by call: first use p50 {first['p50']:.2f} µs, p99 {first['p99']:.2f} µs; raw decrypt p50 "
            f"{raw['p50']:.2f} µs, p99 {raw['p99']:.2f} µs. Sealed token: {details['sealed_token_bytes']} bytes."
        )
    if "service_per_round_per_s" in details:
        latency = details["latency_ms"]
        lines += [
            f"Service per round: {', '.join(f'{v:,.0f}' for v in details['service_per_round_per_s'])} writes/s; "
            f"raw between rounds: {', '.join(f'{v:,.0f}' for v in details['raw_per_round_per_s'])} writes/s "
            "(medians are reported).",
            f"PUT latency under this load: p50 {latency['p50']:.1f} ms, p99 {latency['p99']:.1f} ms. "
            f"Service process CPU: {', '.join(f'{v:.0f}%' for v in details['service_cpu_percent_of_one_core'])} "
            "of one core per round. Statuses: " + ", ".join(f"{k}: {v:,}" for k, v in details["statuses"].items()),
        ]
    if "sizes" in details and "concurrency" in details:
        lines += _engine_endpoint_details(details)
    if "default_bound" in details:
        lines += _worker_memory_details(details)
    if "mix_percent" in details:
        lines += _mixed_load_details(details)
    return [*lines, ""]


def _engine_endpoint_details(details: dict[str, Any]) -> list[str]:
    concurrency = details["concurrency"]
    lines = ["| secrets | body | measured | p50 | p90 | p99 | max | unit |", "|---:|---:|---|---:|---:|---:|---:|---|"]
    rows = (
        ("service_sequential_ms", "endpoint, sequential"),
        ("floor_sequential_ms", "raw: static JSON handler, sequential"),
        ("raw_select_ms", "raw: SQLite SELECT of the same rows"),
        ("service_concurrent_ms", f"endpoint, {concurrency} concurrent"),
        ("floor_concurrent_ms", f"raw: static JSON handler, {concurrency} concurrent"),
    )
    for size in details["sizes"].values():
        for key, name in rows:
            stats = size[key]
            lines.append(
                f"| {size['secrets']:,} | {size['body_bytes']:,} B | {name} | {stats['p50']:.3f} | "
                f"{stats['p90']:.3f} | {stats['p99']:.3f} | {stats['max']:.3f} | ms |"
            )
    lines.append("")
    lines.append(
        f"Throughput with {concurrency} concurrent clients: "
        + "; ".join(
            f"{size['secrets']:,} secrets {size['service_concurrent_per_s']:,.0f}/s "
            f"(static handler {size['floor_concurrent_per_s']:,.0f}/s)"
            for size in details["sizes"].values()
        )
        + f". {details['rounds']} interleaved rounds; {details['value_bytes']}-byte values."
    )
    return lines


def _worker_memory_details(details: dict[str, Any]) -> list[str]:
    lines = [
        "| cache bound | RSS, empty cache | after pass 1 | after pass 2 | peak (VmHWM) | projects kept | "
        "hits / misses / evictions | bytes per kept project | pass times |",
        "|---:|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    for run in details["runs"].values():
        stats = run["stats"]
        lines.append(
            f"| {run['bound']:,} | {run['rss_empty_mib']:.1f} MiB | {run['rss_after_pass_mib'][0]:.1f} MiB | "
            f"{run['rss_after_pass_mib'][-1]:.1f} MiB | {run['peak_rss_mib']:.1f} MiB | {run['kept']:,} | "
            f"{stats['hits']:,} / {stats['misses']:,} / {stats['evictions']:,} | {run['bytes_per_kept_project']:,} | "
            f"{', '.join(f'{s:.1f} s' for s in run['pass_seconds'])} |"
        )
    lines.append("")
    for run in details["runs"].values():
        curve = run["rss_curve_mib"]
        points = curve[:: max(1, len(curve) // 10)]
        lines.append(
            f"RSS while filling, bound {run['bound']:,} (projects requested: MiB): "
            + ", ".join(f"{done:,}: {mib:.1f}" for done, mib in points)
            + "."
        )
    default = details["runs"][str(details["default_bound"])]
    lines.append(
        f"Flat after the bound: with {details['default_bound']:,}, RSS grew {default['flat_growth_mib']:.2f} MiB from "
        f"the moment {2 * details['default_bound']:,} projects had gone through to the end "
        f"(allowed: {details['flat_slack_mib']:.0f} MiB). Snapshot JSON per project: "
        f"{default['snapshot_json_bytes']:,} bytes."
    )
    return lines


def _mixed_load_details(details: dict[str, Any]) -> list[str]:
    lines = [
        "| kind | share | timed | per s | p50 | p90 | p99 | max | unloaded p50 | raw p50 (paced) | raw p99 (paced) "
        "| errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, share in details["mix_percent"].items():
        stats, idle = details["latency_ms"][kind], details["idle_latency_ms"][kind]
        raw = details["floor_latency_ms"][kind]
        errors = sum(details["errors"][kind].values())
        lines.append(
            f"| {kind} | {share}% | {details['counts'][kind]:,} | {details['per_s'][kind]:,.1f} | {stats['p50']:.1f} | "
            f"{stats['p90']:.1f} | {stats['p99']:.1f} | {stats['max']:.1f} | {idle['p50']:.1f} | {raw['p50']:.2f} | "
            f"{raw['p99']:.2f} | {errors:,} |"
        )
    cpu = details["cpu_percent_of_one_core"]
    lag = details["driver_loop_lag_ms"]
    codes = details["error_codes"]
    problems = details["logged_problems"]
    lines += [
        "",
        "Latencies in ms. Unloaded: one client, one request at a time, before the load. Raw (paced): the static "
        "handler answering the same requests at the service's rate of each kind. In a closed loop the clients "
        "split by where they wait (rate x mean latency): "
        + ", ".join(
            f"{kind} {details['per_s'][kind] * details['latency_ms'][kind]['mean'] / 1000:.0f}"
            for kind in details["mix_percent"]
        )
        + f" of {details['clients']}.",
        "",
        f"Requests: {details['sent']:,} sent, {details['error_count']:,} errors "
        f"({details['errors_in_warmup']:,} of them in the warm-up)"
        + (": " + "; ".join(f"{key}: {n:,}" for key, n in codes.items()) if codes else "")
        + f". Raw closed loop (same {details['clients']} clients): {details['floor_closed_per_s']:,.0f} requests/s, "
        f"{details['floor_error_count']:,} errors. Workers alive after the load: {details['workers_alive_after']}.",
        "CPU during the load (% of one core; 2 cores = 200%): "
        + ", ".join(f"{name} {value:.0f}%" for name, value in cpu.items())
        + f"; the whole machine {details['machine_busy']:.0%} busy. The driver (all {details['clients']} clients, one "
        f"process) shares the 2 CPUs with the service, the workers and Redis; its event loop woke late by "
        f"p50 {lag.get('p50', 0):.1f} ms, p99 {lag.get('p99', 0):.1f} ms, which is inside every latency above.",
    ]
    if problems["counts"]:
        lines += ["", "Warnings and errors logged by the service and the workers (ids folded):", ""]
        lines += [f"- {n:,}: `{key}`" for key, n in problems["counts"].items()]
    return lines


def write_report(outcomes: list[Outcome], host: dict[str, str], started_at: str) -> None:
    lines = [
        "# Benchmark report",
        "",
        f"Generated by `make bench` (`python -m bench.run_all`) on {started_at}. Every figure stands beside a",
        "raw limit measured in the same run on the same machine; the ratio is figure ÷ raw (for a throughput,",
        'the share of raw reached). "Other work" is the share of the machine\'s CPUs used during that benchmark by',
        "anything but the benchmark's own processes and Redis: other people's jobs, which the figures then include.",
        "Machine-readable results: `bench/results/*.json`.",
        "",
        "## Figures",
        "",
        *_figures_table(outcomes),
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *(f"| {key} | {value} |" for key, value in host.items()),
        "",
        "Loopback only: the service, the worker, Redis and the benchmark drivers share these cores.",
        "",
        "## Details",
        "",
    ]
    for outcome in outcomes:
        lines += _details(outcome)
    REPORT.write_text("\n".join(lines).rstrip("\n") + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description="Run every benchmark and write bench/REPORT.md")
    parser.add_argument("--only", nargs="*", choices=[b.name for b in BENCHMARKS], help="run only these")
    args = parser.parse_args()
    selected = [b for b in BENCHMARKS if not args.only or b.name in args.only]
    started_at = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    host = asyncio.run(machine())
    outcomes = [run(b) if b in selected else earlier(b) for b in BENCHMARKS]
    write_report(outcomes, host, started_at)
    print(f"\nwrote {REPORT.relative_to(REPO)}")
    print("\n".join(_figures_table(outcomes)))
    ran = [o for o in outcomes if o.benchmark in selected]
    return 0 if all(o.returncode == 0 and o.result is not None for o in ran) else 1


if __name__ == "__main__":
    sys.exit(main())
