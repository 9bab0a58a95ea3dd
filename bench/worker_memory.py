"""Worker memory with 10,000 projects x 20 secrets cached: bounded by the configured cache size.

Each configuration runs in a fresh process of its own (`--child MAX_PROJECTS`): the worker's
SnapshotCache (worker.snapshots), trusted as while the listener follows the stream, with a fake
fetch that builds each project's snapshot locally (no service is needed for 10,000 projects):
a project key of its own, 20 values of 64 bytes sealed under it as the service seals them,
encoded to the engine endpoint's JSON and decoded with the worker's own decoder, so the cache
holds the very objects a real fetch gives it. The child then asks the cache for every one of
10,000 projects in turn, twice (a second pass: with the default bound every request misses and
evicts again; with a bound of 10,000 every request hits).

RSS is read from /proc/self/status (VmRSS; VmHWM is the peak over the process's life) after a
`gc.collect()`. The raw limit is the RSS of the same process with an empty cache, taken after
the imports and one fetch that is thrown away. Nothing here prints or keeps a value.
"""

import argparse
import asyncio
import gc
import json
import subprocess
import sys
import time
from pathlib import Path

from cryptography.fernet import Fernet

from bench.harness import REPO, Figure, bench_value, print_figures, write_result
from contract.engine import EngineSecret, EngineSnapshot, snapshot_decoder, snapshot_encoder
from contract.sealing import seal
from worker.settings import WorkerSettings
from worker.snapshots import SnapshotCache

PROJECTS = 10_000
SECRETS = 20
VALUE_BYTES = 64
PASSES = 2
DEFAULT_BOUND = WorkerSettings().snapshot_cache_projects  # 1,000
BOUNDS = (DEFAULT_BOUND, PROJECTS)
CURVE_POINTS = 20  # RSS samples per pass
FLAT_SLACK_MIB = 2.0  # with the bound, RSS may not grow more than this once 2 x bound projects went through
CHILD_TIMEOUT_S = 240.0
TOKEN = "bench-engine-token"  # the fake fetch ignores it
MIB = 1024 * 1024


def proc_status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def rss_mib() -> float:
    gc.collect()
    return proc_status_kib("VmRSS") / 1024


class FakeEngine:
    """The engine endpoint's answer for any project, built in-process: fresh key, sealed values, JSON, decoded."""

    def __init__(self, secrets: int) -> None:
        self.secrets = secrets
        self.fetches = 0
        self.body_bytes = 0

    async def fetch(self, project: str, _token: str) -> EngineSnapshot:
        key = Fernet.generate_key()
        fernet = Fernet(key)
        names = [f"BENCH_SECRET_{i:02d}" for i in range(self.secrets)]
        source = EngineSnapshot(
            project=project,
            revision=1,
            data_key=key.decode(),
            secrets=[
                EngineSecret(
                    name=name,
                    version=1,
                    ciphertext=seal(fernet, project, "secret", name, bench_value(i, VALUE_BYTES)).decode(),
                )
                for i, name in enumerate(names)
            ],
        )
        body = snapshot_encoder.encode(source)
        self.fetches += 1
        self.body_bytes += len(body)
        return snapshot_decoder.decode(body)  # what EngineClient.fetch hands the cache


def project_id(index: int) -> str:
    return f"prj_{index:022d}"  # the length of a service project id


async def child(bound: int, projects: int, secrets: int, passes: int) -> dict[str, object]:
    engine = FakeEngine(secrets)
    cache = SnapshotCache(engine.fetch, max_projects=bound, miss_refresh_interval_s=0.25)
    cache.trusted = True  # as while the listener follows the stream: fetched snapshots are kept
    await engine.fetch("warm-up", TOKEN)  # every code path loaded once, its snapshot thrown away
    engine.fetches = engine.body_bytes = 0
    empty = rss_mib()
    step = max(1, projects // CURVE_POINTS)
    curve: list[tuple[int, float]] = []
    after_pass: list[float] = []
    pass_seconds: list[float] = []
    at_two_bounds: float | None = None
    for number in range(passes):
        started = time.perf_counter()
        for index in range(projects):
            state = cache.state(project_id(index))
            await cache.snapshot(state, TOKEN)
            done = number * projects + index + 1
            if done % step == 0:
                curve.append((done, round(proc_status_kib("VmRSS") / 1024, 1)))
            if done == 2 * bound:
                at_two_bounds = rss_mib()
        pass_seconds.append(round(time.perf_counter() - started, 2))
        after_pass.append(rss_mib())
    kept = len(cache)
    return {
        "bound": bound,
        "projects": projects,
        "secrets_per_project": secrets,
        "passes": passes,
        "rss_empty_mib": round(empty, 2),
        "rss_after_pass_mib": [round(v, 2) for v in after_pass],
        "rss_at_two_bounds_mib": None if at_two_bounds is None else round(at_two_bounds, 2),
        "peak_rss_mib": round(proc_status_kib("VmHWM") / 1024, 2),
        "kept": kept,
        "bytes_per_kept_project": round((after_pass[0] - empty) * MIB / max(1, kept)),
        "snapshot_json_bytes": round(engine.body_bytes / max(1, engine.fetches)),
        "fetches": engine.fetches,
        "stats": dict(cache.stats),
        "pass_seconds": pass_seconds,
        "rss_curve_mib": curve,
    }


def run_child(bound: int, projects: int, secrets: int, passes: int) -> dict[str, object]:
    command = [sys.executable, "-m", "bench.worker_memory", "--child", str(bound),
               "--projects", str(projects), "--secrets", str(secrets), "--passes", str(passes)]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the child with bound {bound} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def bounded(run: dict[str, object]) -> tuple[bool, float]:
    """Kept no more than the bound, and RSS flat (within FLAT_SLACK_MIB) once 2 x bound projects went through."""
    after = run["rss_after_pass_mib"]
    at_two = run["rss_at_two_bounds_mib"]
    kept, bound = run["kept"], run["bound"]
    assert isinstance(after, list) and isinstance(kept, int) and isinstance(bound, int)
    growth = float(after[-1]) - float(at_two) if isinstance(at_two, float | int) else 0.0
    return kept <= bound and growth <= FLAT_SLACK_MIB, growth


def main() -> None:
    parser = argparse.ArgumentParser(description="Worker RSS with many projects cached, bounded by the cache size")
    parser.add_argument("--child", type=int, help="(internal) run one configuration with this bound, print JSON")
    parser.add_argument("--projects", type=int, default=PROJECTS)
    parser.add_argument("--secrets", type=int, default=SECRETS)
    parser.add_argument("--passes", type=int, default=PASSES)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(asyncio.run(child(args.child, args.projects, args.secrets, args.passes))))
        return
    started = time.monotonic()
    runs = {bound: run_child(bound, args.projects, args.secrets, args.passes) for bound in BOUNDS}
    small, large = runs[DEFAULT_BOUND], runs[PROJECTS]
    ok, growth = bounded(small)
    small["flat_growth_mib"] = round(growth, 2)

    def num(run: dict[str, object], key: str) -> float:
        value = run[key]
        assert isinstance(value, int | float)
        return float(value)

    n, s = f"{args.projects:,}", args.secrets
    figures = [
        Figure(f"worker peak RSS, {n} projects x {s} secrets, cache bound {DEFAULT_BOUND:,} (default)",
               num(small, "peak_rss_mib"), "MiB", "same process, empty cache", num(small, "rss_empty_mib"),
               f"<= {DEFAULT_BOUND:,} kept; flat after the bound", ok),
        Figure(f"projects kept by the cache, bound {DEFAULT_BOUND:,}, after {n} x {args.passes}",
               num(small, "kept"), "projects", "the configured bound (max_projects)", float(DEFAULT_BOUND),
               "<= bound", num(small, "kept") <= DEFAULT_BOUND),
        Figure(f"worker peak RSS, {n} projects x {s} secrets, cache bound {PROJECTS:,} (all kept)",
               num(large, "peak_rss_mib"), "MiB", "same process, empty cache", num(large, "rss_empty_mib"),
               "(reported)", True),
        Figure(f"memory per cached project ({s} secrets of {VALUE_BYTES} bytes)", num(large, "bytes_per_kept_project"),
               "bytes", "its snapshot as JSON (engine endpoint body)", num(large, "snapshot_json_bytes"),
               "(reported)", True),
    ]  # fmt: skip
    details = {
        "runs": {str(bound): run for bound, run in runs.items()},
        "default_bound": DEFAULT_BOUND,
        "flat_slack_mib": FLAT_SLACK_MIB,
        "duration_s": round(time.monotonic() - started, 1),
        "method": (
            f"the worker's SnapshotCache in a fresh process per bound, a fake fetch building each snapshot locally "
            f"(own Fernet key, {s} sealed {VALUE_BYTES}-byte values, encoded to the endpoint's JSON and decoded "
            f"with the worker's decoder); {args.passes} passes over {n} projects; RSS = VmRSS after gc.collect(), "
            "peak = VmHWM; bytes per project = (RSS after the first pass - empty) / projects kept; flat = RSS "
            f"grows <= {FLAT_SLACK_MIB:.0f} MiB from 2 x bound projects to the end"
        ),
    }
    write_result("worker_memory", figures, details)
    print_figures("Worker memory (SnapshotCache)", figures)
    for bound, run in runs.items():
        print(
            f"  bound {bound:,}: empty {run['rss_empty_mib']} MiB, after passes {run['rss_after_pass_mib']} MiB, "
            f"peak {run['peak_rss_mib']} MiB, kept {run['kept']:,}, stats {run['stats']}"
        )


if __name__ == "__main__":
    main()
