"""Webhook -> verify_webhook -> respond through the engine, with 1 and 2 workers, beside the ceiling.

The ceiling is an aiohttp handler doing the same Stripe HMAC check in its own process (no queue,
no worker, no secret lookup), driven by the same load in the same run. Figures: executions/s
with 32 concurrent senders, and p50/p99 latency at moderate load (4 concurrent senders).

This machine's speed drifts by a third within minutes (other tenants of the host), so each
engine throughput window sits between two ceiling windows, and its ratio is taken against the
mean of those two: both sides of a ratio see the same machine.

Last, bench.bare_relay moves the same webhooks over the engine's own Redis transport with none of
the features the issues require (record, grant, secret, workflow, masking, audit): the floor,
reported with 1 and 2 workers beside the ceiling, and what share of it the engine reaches.

The details also say where a moderate-load execution spends its time (from the records' own
timestamps: sent -> started -> finished -> answered) and the machine's load average,
since the machine may be shared.
"""

import asyncio
import hashlib
import hmac
import os
import secrets as random
import statistics
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from urllib.parse import urlsplit

import aiohttp

from bench import lean_http
from bench.harness import (
    REDIS_URL,
    REPO,
    Figure,
    Project,
    Service,
    create_project,
    delete_keys,
    free_port,
    print_figures,
    process_cpu_s,
    running_service,
    stop_process,
    summary,
    unique_prefix,
    write_result,
)

THROUGHPUT_CLIENTS = 32
MODERATE_CLIENTS = 4
WINDOW_S = 6.0
WARMUP_S = 1.5
TIMELINE_SAMPLES = 300  # the last moderate-load executions whose records are read for the timeline
SIGNING_KEY = "whsec_" + random.token_hex(24)
BODY = b'{"id":"evt_bench","type":"payment_intent.succeeded","data":{"object":{"amount":4200}}}'
WORKFLOW = {
    "trigger": {"type": "webhook"},
    "nodes": [
        {"id": "verify", "type": "verify_webhook",
         "config": {"scheme": "stripe", "secret": "${ secrets.STRIPE_WEBHOOK_SIGNING_KEY }"}},
        {"id": "reply", "type": "respond", "config": {"status": 200, "body": {"received": True}}},
    ],
}  # fmt: skip

CEILING_SERVER = f"""
import hashlib, hmac, sys, time
import uvloop  # the loop the service runs on
from aiohttp import web
KEY = {SIGNING_KEY!r}.encode()

async def hook(request):
    body = await request.read()
    parts = dict(p.split("=", 1) for p in request.headers.get("Stripe-Signature", "").split(","))
    signed = parts.get("t", "").encode() + b"." + body
    expected = hmac.new(KEY, signed, hashlib.sha256).hexdigest()
    if abs(time.time() - int(parts.get("t", "0"))) > 300 or not hmac.compare_digest(expected, parts.get("v1", "")):
        return web.json_response({{"error": "invalid_signature"}}, status=400)
    return web.json_response({{"received": True}})

app = web.Application()
app.router.add_post("/hooks/ceiling", hook)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None, loop=uvloop.new_event_loop())
"""


def signature() -> str:
    t = int(time.time())
    return f"t={t},v1={hmac.new(SIGNING_KEY.encode(), f'{t}.'.encode() + BODY, hashlib.sha256).hexdigest()}"


Sent = tuple[float, float, str]  # Unix time sent, Unix time answered, execution id


async def drive(
    url: str, clients: int, window_s: float, sent: list[Sent] | None = None
) -> tuple[float, list[float], int]:
    """`clients` senders in a loop for `window_s` after a warm-up: (per second, latencies ms, errors).
    With `sent`, each measured 200 that names its execution is appended there."""
    latencies: list[float] = []
    errors = 0
    start = time.monotonic()
    measure_from, stop_at = start + WARMUP_S, start + WARMUP_S + window_s

    async def sender(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        while (now := time.monotonic()) < stop_at:
            headers = {"Content-Type": "application/json", "Stripe-Signature": signature()}
            sent_at = time.time()
            async with session.post(url, data=BODY, headers=headers) as response:
                await response.read()
                ok = response.status == 200
                execution_id = response.headers.get("X-Execution-Id")
            if now >= measure_from:
                latencies.append((time.monotonic() - now) * 1000)
                errors += not ok
                if sent is not None and ok and execution_id:
                    sent.append((sent_at, time.time(), execution_id))

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(sender(session) for _ in range(clients)))
    return len(latencies) / window_s, latencies, errors


async def lean_windows(url: str, ceiling_url: str) -> dict[str, float]:
    """Throughput with bench.lean_http's driver (~0.03 ms of CPU per request against aiohttp's
    ~0.14 ms): the ceiling, the engine, the ceiling again. Reported beside the main figure, because
    with aiohttp's client the ceiling is held back by the driver itself."""
    figures: dict[str, float] = {}
    for name, target in (("ceiling_before", ceiling_url), ("engine", url), ("ceiling_after", ceiling_url)):
        parsed = urlsplit(target)
        assert parsed.port is not None
        make = lean_http.post(parsed.path, parsed.port, BODY, _signed_headers)
        figures[name], figures[f"{name}_errors"] = await lean_http.drive(
            parsed.port, make, THROUGHPUT_CLIENTS, WINDOW_S, WARMUP_S
        )
    figures["ceiling_mean"] = (figures["ceiling_before"] + figures["ceiling_after"]) / 2
    return figures


def _signed_headers() -> dict[str, str]:
    return {"Content-Type": "application/json", "Stripe-Signature": signature()}


@asynccontextmanager
async def workers(service: Service, count: int) -> AsyncIterator[list[int]]:
    env = {**os.environ, "REDIS_URL": REDIS_URL, "BACKEND_SECRETS_API_URL": service.base_url,
           "BACKEND_SECRETS_STREAM_PREFIX": service.prefix, "BACKEND_SECRETS_LOG_LEVEL": "WARNING"}  # fmt: skip
    procs = [
        await asyncio.create_subprocess_exec(sys.executable, "-m", "worker", cwd=REPO, env=env,
                                             stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        for _ in range(count)
    ]  # fmt: skip
    try:
        await asyncio.sleep(1.5)  # connected and in the consumer group
        yield [proc.pid for proc in procs]
    finally:
        for proc in procs:
            await stop_process(proc)


@asynccontextmanager
async def bare_relay(workers_count: int) -> AsyncIterator[tuple[str, list[int]]]:
    """bench.bare_relay's server and `workers_count` workers (the engine's transport, no feature):
    the URL to post to, and the server's and workers' process ids."""
    port = free_port()
    env = {**os.environ, "REDIS_URL": REDIS_URL, "BENCH_PREFIX": unique_prefix("bare"),
           "BENCH_SIGNING_KEY": SIGNING_KEY}  # fmt: skip
    relay = "bench.bare_relay"
    procs = [await asyncio.create_subprocess_exec(sys.executable, "-m", relay, "server", str(port), cwd=REPO, env=env)]
    try:
        await asyncio.sleep(1.0)  # the results reader is reading before any request is sent
        for _ in range(workers_count):
            procs.append(await asyncio.create_subprocess_exec(sys.executable, "-m", relay, "worker", cwd=REPO, env=env))
        await asyncio.sleep(1.0)
        yield f"http://127.0.0.1:{port}/hooks/bare", [proc.pid for proc in procs]
    finally:
        for proc in procs:
            await stop_process(proc)
        await delete_keys(REDIS_URL, env["BENCH_PREFIX"])


async def bare_relay_runs(ceiling_url: str) -> dict[int, dict[str, float]]:
    """Throughput of the bare relay with 1 and 2 workers, each window between two ceiling windows,
    and the CPU its server and workers spend per execution (as for the engine)."""
    runs: dict[int, dict[str, float]] = {}
    for count in (1, 2):
        async with bare_relay(count) as (url, pids):
            before, _, _ = await drive(ceiling_url, THROUGHPUT_CLIENTS, WINDOW_S)
            cpu_before = [process_cpu_s(pid) for pid in pids]
            per_s, _, errors = await drive(url, THROUGHPUT_CLIENTS, WINDOW_S)
            cpu_ms = [
                (process_cpu_s(pid) - used) * 1000 / (per_s * WINDOW_S + 1e-9)
                for pid, used in zip(pids, cpu_before, strict=True)
            ]
            after, _, _ = await drive(ceiling_url, THROUGHPUT_CLIENTS, WINDOW_S)
        runs[count] = {"per_s": per_s, "errors": errors, "ceiling_mean": (before + after) / 2,
                       "cpu_ms_per_execution_server": round(cpu_ms[0], 3),
                       "cpu_ms_per_execution_workers": round(sum(cpu_ms[1:]), 3)}  # fmt: skip
    return runs


@asynccontextmanager
async def ceiling_server() -> AsyncIterator[str]:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", CEILING_SERVER, str(port), cwd=REPO)
    try:
        await asyncio.sleep(1.0)
        yield f"http://127.0.0.1:{port}/hooks/ceiling"
    finally:
        await stop_process(proc)


def _unix(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


async def timeline(service: Service, project: Project, sent: list[Sent]) -> dict[str, float]:
    """p50 of each leg, in ms, from the records of the last executions sent: to the worker (sent ->
    the worker starts it: the service, the queue, the consumer group), ran (the nodes, masking),
    answered (the result's hand-over, the service reading it, the reply reaching the sender). The
    execution row is written beside the queueing, so its `created_at` marks no leg."""
    legs: dict[str, list[float]] = {"to_worker": [], "ran": [], "answered": []}
    async with aiohttp.ClientSession() as session:
        for sent_at, answered_at, execution_id in sent[-TIMELINE_SAMPLES:]:
            url = f"{service.base_url}/api/projects/{project.id}/executions/{execution_id}"
            async with session.get(url, headers=project.dashboard) as response:
                record = await response.json()
            started, finished = _unix(record["started_at"]), _unix(record["finished_at"])
            for leg, seconds in zip(legs, (started - sent_at, finished - started, answered_at - finished), strict=True):
                legs[leg].append(seconds * 1000)
    return {leg: statistics.median(values) for leg, values in legs.items() if values}


async def engine_runs(service: Service, ceiling_url: str) -> dict[int, dict[str, object]]:
    async with aiohttp.ClientSession() as session:
        project = await create_project(session, service)
        base = f"{service.base_url}/api/projects/{project.id}"
        await session.put(f"{base}/secrets/STRIPE_WEBHOOK_SIGNING_KEY", json={"value": SIGNING_KEY},
                          headers=project.dashboard)  # fmt: skip
        await session.put(f"{base}/workflows/stripe", json=WORKFLOW, headers=project.dashboard)
    url = f"{service.base_url}/hooks/{project.id}/stripe"
    runs: dict[int, dict[str, object]] = {}
    for count in (1, 2):
        sent: list[Sent] = []
        async with workers(service, count) as worker_pids:
            ceiling_before, _, _ = await drive(ceiling_url, THROUGHPUT_CLIENTS, WINDOW_S)
            cpu_before = [process_cpu_s(pid) for pid in (service.pid, *worker_pids)]
            per_s, _, errors = await drive(url, THROUGHPUT_CLIENTS, WINDOW_S)
            cpu_used = [
                process_cpu_s(pid) - before for pid, before in zip((service.pid, *worker_pids), cpu_before, strict=True)
            ]
            ceiling_after, _, _ = await drive(ceiling_url, THROUGHPUT_CLIENTS, WINDOW_S)
            _, latencies, lat_errors = await drive(url, MODERATE_CLIENTS, WINDOW_S, sent)
            legs = await timeline(service, project, sent)  # before more executions push these out (retention)
            lean = await lean_windows(url, ceiling_url)
        executions = per_s * WINDOW_S + 1e-9  # the warm-up's executions are in the CPU time too: an upper bound
        runs[count] = {"per_s": per_s, "ceiling_per_s": {"before": ceiling_before, "after": ceiling_after,
                                                         "mean": (ceiling_before + ceiling_after) / 2},
                       "latency_ms": summary(latencies), "errors": errors + lat_errors, "lean_driver": lean,
                       "timeline_p50_ms": legs,
                       "cpu_ms_per_execution_32_senders": {
                           "service": round(cpu_used[0] * 1000 / executions, 3),
                           "workers": round(sum(cpu_used[1:]) * 1000 / executions, 3)}}  # fmt: skip
    return runs


async def main() -> None:
    started = time.monotonic()
    load_at_start = os.getloadavg()
    async with ceiling_server() as ceiling_url:
        async with running_service("webhooks", extra_env={"BACKEND_SECRETS_LOG_LEVEL": "WARNING"}) as service:
            runs = await engine_runs(service, ceiling_url)
        bare = await bare_relay_runs(ceiling_url)
        _, ceiling_lat, ceiling_errors = await drive(ceiling_url, MODERATE_CLIENTS, WINDOW_S)
    ceiling_ms = summary(ceiling_lat)
    figures = []
    for count, run in runs.items():
        lat: dict[str, float] = run["latency_ms"]  # type: ignore[assignment]
        per_s = float(run["per_s"])  # type: ignore[arg-type]
        ceiling_per_s = float(run["ceiling_per_s"]["mean"])  # type: ignore[index]
        figures += [
            Figure(f"webhook executions/s, {count} worker(s), {THROUGHPUT_CLIENTS} senders", per_s, "executions/s",
                   "in-process HMAC handler, windows around it", ceiling_per_s, ">= 25% of ceiling",
                   per_s >= 0.25 * ceiling_per_s),
            Figure(f"webhook p50, {count} worker(s), {MODERATE_CLIENTS} senders", lat["p50"], "ms",
                   "in-process handler p50", ceiling_ms["p50"], "<= 5 ms", lat["p50"] <= 5.0),
            Figure(f"webhook p99, {count} worker(s), {MODERATE_CLIENTS} senders", lat["p99"], "ms",
                   "in-process handler p99", ceiling_ms["p99"], "(reported)", True),
            Figure(f"webhook executions/s, {count} worker(s), {THROUGHPUT_CLIENTS} lean senders",
                   run["lean_driver"]["engine"], "executions/s",  # type: ignore[index]
                   "in-process HMAC handler, same lean senders",
                   run["lean_driver"]["ceiling_mean"], "(reported)", True),  # type: ignore[index]
        ]  # fmt: skip
    for count, floor in bare.items():
        figures.append(Figure(f"bare relay executions/s, {count} worker(s), {THROUGHPUT_CLIENTS} senders",
                              floor["per_s"], "executions/s", "in-process HMAC handler, windows around it",
                              floor["ceiling_mean"], "(reported: the floor)", True))  # fmt: skip
    details = {
        "method": (f"{THROUGHPUT_CLIENTS} concurrent senders for throughput and {MODERATE_CLIENTS} for latency, "
                   f"{WINDOW_S:.0f} s windows after {WARMUP_S} s warm-up, each request a freshly signed "
                   "Stripe webhook through service -> executions stream -> worker -> result -> response; "
                   "each engine throughput window between two ceiling windows, its ratio against their mean; "
                   "then the same three windows with bench.lean_http's driver (reported); last, bench.bare_relay "
                   "(the same transport, no feature) between two ceiling windows, with 1 and 2 workers"),
        "runs": runs,
        "bare_relay": bare,
        "ceiling": {"latency_ms": ceiling_ms, "latency_errors": ceiling_errors},
        "load_average": {"start": load_at_start, "end": os.getloadavg()},
        "duration_s": round(time.monotonic() - started, 1),
    }  # fmt: skip
    write_result("webhooks", figures, details)
    print_figures("Webhook -> verify -> respond", figures)
    for count, run in runs.items():
        legs = ", ".join(f"{leg} {ms:.2f}" for leg, ms in run["timeline_p50_ms"].items())  # type: ignore[attr-defined]
        print(f"  timeline p50 (ms), {count} worker(s), {MODERATE_CLIENTS} senders: {legs}")
        print(f"  CPU ms per execution, {count} worker(s): {run['cpu_ms_per_execution_32_senders']}")
        print(f"  ceiling executions/s around it: {run['ceiling_per_s']}")
    for count, floor in bare.items():
        engine_share = float(runs[count]["per_s"]) / floor["per_s"]  # type: ignore[arg-type]
        print(
            f"  bare relay, {count} worker(s): {floor['per_s']:,.0f}/s, {floor['per_s'] / floor['ceiling_mean']:.0%} "
            f"of the ceiling; the engine reaches {engine_share:.0%} of it; CPU ms per execution: server "
            f"{floor['cpu_ms_per_execution_server']}, workers {floor['cpu_ms_per_execution_workers']}"
        )
    print(f"  load average: {load_at_start[0]:.2f} at start, {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    asyncio.run(main())
