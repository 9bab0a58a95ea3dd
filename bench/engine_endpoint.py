"""The engine endpoint (`GET /api/engine/{p}/secrets`) for 10 / 100 / 1,000 secrets, beside two raw limits.

One service process (`python -m service`), three projects holding 10, 100 and 1,000 secrets of
64-byte values. Latency is timed in this driver from sending the request to having read the whole
body, on one keep-alive aiohttp session: sequentially (one request at a time) and with 8
concurrent clients. Raw limits, measured in the same run and interleaved with it round by round
so both sides see the same machine:

- the HTTP floor: a bare aiohttp handler in a process of its own (no auth, no database, no
  encoding) answering a static JSON body of exactly the same size, driven the same way;
- a raw SQLite SELECT of the same rows: the endpoint's statement (project, key, names,
  versions, ciphertexts) on the service's own database file, with a plain sqlite3 connection
  in this process, rows fetched to Python objects.

The endpoint also checks the token, unwraps the project key and encodes the snapshot; its
ratio to the floor is what those and aiosqlite's thread hop cost.
"""

import argparse
import asyncio
import contextlib
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp

from bench.harness import (
    REPO,
    Figure,
    Project,
    Service,
    bench_value,
    create_project,
    free_port,
    print_figures,
    running_service,
    stop_process,
    summary,
    write_result,
)

SIZES = (10, 100, 1_000)
VALUE_BYTES = 64
CONCURRENCY = 8
ROUNDS = 5
WARMUP = 30
FILL_CLIENTS = 16
# per round and size: sequential requests, and requests per concurrent client
COUNTS = {10: (200, 50), 100: (200, 50), 1_000: (60, 20)}
REQUEST_TIMEOUT_S = 30.0
RUN_TIMEOUT_S = 400.0

# The endpoint's statement (service.store.secrets.engine_rows), so that raw reads the very same rows.
ENGINE_SELECT = (
    "SELECT p.revision, p.wrapped_key, s.name, s.version, s.ciphertext, s.previous_ciphertext, "
    "s.previous_valid_until FROM projects p "
    "LEFT JOIN secrets s ON s.project_id = p.id WHERE p.id = ? ORDER BY s.name"
)

# A bare aiohttp app: any method on /static/{size} answers a static JSON body of exactly `size` bytes.
FLOOR_SERVER = """
import sys
import uvloop  # the loop the service runs on
from aiohttp import web

BODIES = {}


def body(size):
    if size not in BODIES:
        BODIES[size] = b'{"pad":"' + b"x" * max(0, size - 10) + b'"}'
    return BODIES[size]


async def static(request):
    await request.read()
    return web.Response(body=body(int(request.match_info["size"])), content_type="application/json",
                        headers={"Cache-Control": "no-store"})


app = web.Application()
app.router.add_route("*", "/static/{size}", static)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None, loop=uvloop.new_event_loop())
"""


@contextlib.asynccontextmanager
async def floor_server() -> AsyncIterator[tuple[str, int]]:
    """The HTTP floor in its own process: yields (base URL, pid); `{base}/static/{size}`."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", FLOOR_SERVER, str(port), cwd=REPO)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15.0
        async with aiohttp.ClientSession() as session:
            while True:
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with session.get(f"{base}/static/16") as response:
                        if response.status == 200:
                            break
                if proc.returncode is not None or time.monotonic() > deadline:
                    raise RuntimeError("the floor server did not start")
                await asyncio.sleep(0.05)
        yield base, proc.pid
    finally:
        await stop_process(proc)


async def fill(session: aiohttp.ClientSession, service: Service, project: Project, count: int) -> None:
    """`count` secrets of VALUE_BYTES bytes, written through the API by FILL_CLIENTS concurrent PUTs."""
    base = f"{service.base_url}/api/projects/{project.id}/secrets"
    names = iter(range(count))

    async def writer() -> None:
        for index in names:
            async with session.put(
                f"{base}/BENCH_{index:04d}", json={"value": bench_value(index, VALUE_BYTES)}, headers=project.dashboard
            ) as response:
                await response.read()
                if response.status not in (200, 201):
                    raise RuntimeError(f"filling the project failed: PUT answered {response.status}")

    await asyncio.gather(*(writer() for _ in range(FILL_CLIENTS)))


Get = Callable[[], Awaitable[int]]


def getter(session: aiohttp.ClientSession, url: str, headers: dict[str, str], statuses: dict[str, int]) -> Get:
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)

    async def get() -> int:
        async with session.get(url, headers=headers, timeout=timeout) as response:
            body = await response.read()
        key = str(response.status)
        statuses[key] = statuses.get(key, 0) + 1
        return len(body)

    return get


async def sequential(get: Get, count: int, into: list[float]) -> None:
    for _ in range(count):
        started = time.perf_counter()
        await get()
        into.append((time.perf_counter() - started) * 1000)


async def concurrent(get: Get, per_client: int, into: list[float]) -> float:
    """CONCURRENCY clients, `per_client` requests each; returns the phase's wall-clock seconds."""
    started = time.perf_counter()
    await asyncio.gather(*(sequential(get, per_client, into) for _ in range(CONCURRENCY)))
    return time.perf_counter() - started


def raw_select(conn: sqlite3.Connection, project_id: str, count: int, into: list[float], expected: int) -> None:
    for _ in range(count):
        started = time.perf_counter()
        rows = conn.execute(ENGINE_SELECT, (project_id,)).fetchall()
        into.append((time.perf_counter() - started) * 1000)
        if len(rows) != expected:
            raise RuntimeError(f"the raw SELECT read {len(rows)} rows, not {expected}")


async def measure(rounds: int) -> tuple[list[Figure], dict[str, object]]:
    started = time.monotonic()
    sizes: dict[str, dict[str, object]] = {}
    async with (
        asyncio.timeout(RUN_TIMEOUT_S),
        running_service("engine-endpoint", extra_env={"BACKEND_SECRETS_LOG_LEVEL": "WARNING"}) as service,
        floor_server() as (floor_base, _),
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY + FILL_CLIENTS)) as session,
    ):
        projects = {}
        for n in SIZES:
            projects[n] = await create_project(session, service, f"Engine {n}")
            await fill(session, service, projects[n], n)
        conn = sqlite3.connect(Path(service.db_dir) / "backend-secrets.db", isolation_level=None)
        conn.execute("PRAGMA query_only = ON")
        try:
            for n in SIZES:
                sizes[str(n)] = await measure_size(session, service, projects[n], floor_base, conn, n, rounds)
        finally:
            conn.close()
    figures: list[Figure] = []
    for n in SIZES:
        stats = sizes[str(n)]
        svc_seq, floor_seq = stats["service_sequential_ms"], stats["floor_sequential_ms"]
        svc_conc, floor_conc = stats["service_concurrent_ms"], stats["floor_concurrent_ms"]
        select = stats["raw_select_ms"]
        assert isinstance(svc_seq, dict) and isinstance(floor_seq, dict) and isinstance(select, dict)
        assert isinstance(svc_conc, dict) and isinstance(floor_conc, dict)
        label = f"{n:,} secrets"
        figures += [
            Figure(f"engine endpoint p50, {label}, sequential", svc_seq["p50"], "ms",
                   "static JSON handler, same body size, p50", floor_seq["p50"], "(reported)", True),
            Figure(f"engine endpoint p50, {label}, sequential", svc_seq["p50"], "ms",
                   "SQLite SELECT of the same rows, p50", select["p50"], "(reported)", True),
            Figure(f"engine endpoint p99, {label}, sequential", svc_seq["p99"], "ms",
                   "static JSON handler, same body size, p99", floor_seq["p99"], "(reported)", True),
            Figure(f"engine endpoint p50, {label}, {CONCURRENCY} concurrent", svc_conc["p50"], "ms",
                   f"static handler, {CONCURRENCY} concurrent, p50", floor_conc["p50"], "(reported)", True),
            Figure(f"engine endpoint p99, {label}, {CONCURRENCY} concurrent", svc_conc["p99"], "ms",
                   f"static handler, {CONCURRENCY} concurrent, p99", floor_conc["p99"], "(reported)", True),
        ]  # fmt: skip
    details: dict[str, object] = {
        "sizes": sizes,
        "value_bytes": VALUE_BYTES,
        "rounds": rounds,
        "concurrency": CONCURRENCY,
        "duration_s": round(time.monotonic() - started, 1),
        "method": (
            f"one keep-alive aiohttp session in the driver; per size, {rounds} rounds of: endpoint sequential, "
            f"floor sequential, raw SELECT, endpoint with {CONCURRENCY} concurrent clients, floor with "
            f"{CONCURRENCY}; each request timed from send to the whole body read, after {WARMUP} warm-up "
            "requests. Floor: a bare aiohttp handler in its own process answering a static JSON body of the "
            "same size. Raw SELECT: the endpoint's statement on the service's database file through a plain "
            "sqlite3 connection in the driver (no HTTP, no thread hop)"
        ),
    }
    return figures, details


async def measure_size(
    session: aiohttp.ClientSession,
    service: Service,
    project: Project,
    floor_base: str,
    conn: sqlite3.Connection,
    n: int,
    rounds: int,
) -> dict[str, object]:
    statuses: dict[str, int] = {}
    headers = {"Authorization": f"Bearer {project.engine_token}"}
    url = f"{service.base_url}/api/engine/{project.id}/secrets"
    async with session.get(url, headers=headers) as response:
        if response.status != 200:
            raise RuntimeError(f"the engine endpoint answered {response.status}")
        snapshot = await response.json()
        body_bytes = len(await response.read())
    if len(snapshot["secrets"]) != n:
        raise RuntimeError(f"the snapshot holds {len(snapshot['secrets'])} secrets, not {n}")
    del snapshot  # ciphertexts and the project key: nothing of it is kept or printed
    service_get = getter(session, url, headers, statuses)
    floor_get = getter(session, f"{floor_base}/static/{body_bytes}", {}, {})
    if await floor_get() != body_bytes:
        raise RuntimeError("the floor body is not the endpoint's size")

    seq_count, per_client = COUNTS[n]
    kinds = ("service_seq", "floor_seq", "select", "service_conc", "floor_conc")
    samples: dict[str, list[float]] = {kind: [] for kind in kinds}
    await sequential(service_get, WARMUP, [])
    await sequential(floor_get, WARMUP, [])
    raw_select(conn, project.id, WARMUP, [], n)
    statuses.clear()
    busy_s = {"service": 0.0, "floor": 0.0}
    for _ in range(rounds):
        await sequential(service_get, seq_count, samples["service_seq"])
        await sequential(floor_get, seq_count, samples["floor_seq"])
        raw_select(conn, project.id, seq_count, samples["select"], n)
        busy_s["service"] += await concurrent(service_get, per_client, samples["service_conc"])
        busy_s["floor"] += await concurrent(floor_get, per_client, samples["floor_conc"])
    errors = {status: count for status, count in statuses.items() if status != "200"}
    if errors:
        raise RuntimeError(f"the engine endpoint answered errors: {errors}")
    result = {
        "secrets": n,
        "body_bytes": body_bytes,
        "statuses": statuses,
        "service_sequential_ms": summary(samples["service_seq"]),
        "floor_sequential_ms": summary(samples["floor_seq"]),
        "raw_select_ms": summary(samples["select"]),
        "service_concurrent_ms": summary(samples["service_conc"]),
        "floor_concurrent_ms": summary(samples["floor_conc"]),
        "service_concurrent_per_s": round(len(samples["service_conc"]) / busy_s["service"], 1),
        "floor_concurrent_per_s": round(len(samples["floor_conc"]) / busy_s["floor"], 1),
    }
    s, f, r = (summary(samples[kind]) for kind in ("service_seq", "floor_seq", "select"))
    print(
        f"  {n:>5} secrets ({body_bytes:,} bytes): endpoint p50 {s['p50']:.3f} ms p99 {s['p99']:.3f} ms; "
        f"floor p50 {f['p50']:.3f} ms; SELECT p50 {r['p50']:.3f} ms",
        flush=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description="Engine endpoint latency beside the HTTP floor and a raw SELECT")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args = parser.parse_args()
    figures, details = asyncio.run(measure(args.rounds))
    write_result("engine_endpoint", figures, details)
    print_figures("Engine endpoint (GET /api/engine/{p}/secrets)", figures)


if __name__ == "__main__":
    main()
