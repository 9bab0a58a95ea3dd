"""Durable PUT throughput with 32 concurrent clients, beside a raw Fernet + SQLite + XADD loop.

The service runs as its own process (`python -m service`); 32 client tasks share one aiohttp
session with keep-alive connections and PUT 64-byte values back to back, each to its own
secret. Only PUTs that complete inside the measurement window count, after a warm-up.

The raw limit, measured in the same run before and after each service round, is what one PUT
must cost at the least, done in a plain loop: seal with Fernet, upsert into SQLite in its own
`BEGIN IMMEDIATE ... COMMIT` (WAL, synchronous=FULL: one fsync per write, the durability the
service promises), then XADD to a stream. Raw is a single loop with no concurrency; the
service may batch commits (group commit), the raw loop does not. Figure and raw are medians
over the rounds, so a burst of load from elsewhere on the machine does not decide either.
"""

import argparse
import asyncio
import sqlite3
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import redis as sync_redis
from cryptography.fernet import Fernet

from bench.harness import (
    REDIS_URL,
    Figure,
    Project,
    Service,
    bench_value,
    create_project,
    print_figures,
    process_cpu_s,
    running_service,
    summary,
    write_result,
)
from contract.sealing import seal

CLIENTS = 32
WARMUP_S = 2.0
WINDOW_S = 4.0
RAW_S = 2.0
ROUNDS = 5
MAX_REQUESTS = 500_000
RUN_TIMEOUT_S = 180.0
STORE = "secret"

RAW_SCHEMA = """
CREATE TABLE IF NOT EXISTS secrets (
    project_id TEXT NOT NULL,
    name       TEXT NOT NULL,
    version    INTEGER NOT NULL,
    ciphertext BLOB NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (project_id, name)
) WITHOUT ROWID
"""


@dataclass
class RawRun:
    writes: int
    seconds: float

    @property
    def per_s(self) -> float:
        return self.writes / self.seconds


def raw_loop(db_path: Path, stream: str, seconds: float, clients: int) -> RawRun:
    """Seal, one durable commit and one XADD per write, as fast as one loop goes."""
    fernet = Fernet(Fernet.generate_key())
    conn = sqlite3.connect(db_path, isolation_level=None)
    client = sync_redis.Redis.from_url(REDIS_URL)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute(RAW_SCHEMA)
        writes, started = 0, time.perf_counter()
        deadline = started + seconds
        while time.perf_counter() < deadline and writes < MAX_REQUESTS:
            name = f"BENCH_{writes % clients}"
            token = seal(fernet, "bench", STORE, name, bench_value(writes))
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "INSERT INTO secrets (project_id, name, version, ciphertext, updated_at) VALUES (?, ?, 1, ?, ?) "
                "ON CONFLICT (project_id, name) DO UPDATE SET version = version + 1, "
                "ciphertext = excluded.ciphertext, updated_at = excluded.updated_at",
                ("bench", name, token, time.strftime("%Y-%m-%dT%H:%M:%SZ")),
            )
            conn.execute("COMMIT")
            client.xadd(stream, {b"seq": str(writes), b"e": b'{"type":"secret.put"}'}, maxlen=100_000, approximate=True)
            writes += 1
        return RawRun(writes, time.perf_counter() - started)
    finally:
        conn.close()
        client.close()


@dataclass
class ServiceRun:
    completed: int
    seconds: float
    latencies_ms: list[float]
    statuses: dict[int, int]
    service_cpu_s: float
    client_cpu_s: float

    @property
    def per_s(self) -> float:
        return self.completed / self.seconds


async def _client(
    session: aiohttp.ClientSession, url: str, project: Project, window: tuple[float, float], run: ServiceRun
) -> None:
    start, end = window
    index = 0
    while (now := time.perf_counter()) < end and index < MAX_REQUESTS:
        index += 1
        async with session.put(url, json={"value": bench_value(index)}, headers=project.dashboard) as response:
            await response.read()
            status = response.status
        done = time.perf_counter()
        run.statuses[status] = run.statuses.get(status, 0) + 1
        if now >= start and done <= end:
            run.completed += 1
            run.latencies_ms.append((done - now) * 1000)


async def service_phase(service: Service, clients: int, warmup_s: float, window_s: float) -> ServiceRun:
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        project = await create_project(session, service)
        urls = [f"{service.base_url}/api/projects/{project.id}/secrets/BENCH_{i}" for i in range(clients)]
        run = ServiceRun(0, window_s, [], {}, 0.0, 0.0)
        begin = time.perf_counter()
        window = (begin + warmup_s, begin + warmup_s + window_s)
        tasks = [asyncio.create_task(_client(session, url, project, window, run)) for url in urls]
        await asyncio.sleep(warmup_s)
        service_cpu, client_cpu = process_cpu_s(service.pid), time.process_time()
        await asyncio.sleep(window_s)
        run.service_cpu_s = process_cpu_s(service.pid) - service_cpu
        run.client_cpu_s = time.process_time() - client_cpu
        await asyncio.gather(*tasks)
    return run


async def drive(clients: int, warmup_s: float, window_s: float, raw_s: float, rounds: int) -> list[Figure]:
    """Rounds of raw, service, raw...: both sides see the same machine, and one noisy round does not decide."""
    started = time.monotonic()
    raws: list[RawRun] = []
    runs: list[ServiceRun] = []
    async with asyncio.timeout(RUN_TIMEOUT_S), running_service("put-throughput") as service:
        raw_db, raw_stream = service.db_dir / "raw.db", f"{service.prefix}:bench-raw"
        raw_loop(raw_db, raw_stream, min(1.0, raw_s), clients)  # warm-up: files, caches, connections
        for round_number in range(rounds):
            raws.append(raw_loop(raw_db, raw_stream, raw_s, clients))
            runs.append(await service_phase(service, clients, warmup_s if round_number == 0 else 1.0, window_s))
        raws.append(raw_loop(raw_db, raw_stream, raw_s, clients))
    errors = {status: n for run in runs for status, n in run.statuses.items() if status not in (200, 201)}
    if errors:
        raise RuntimeError(f"the service answered PUTs with errors: {errors}")
    raw = statistics.median(r.per_s for r in raws)
    put = statistics.median(r.per_s for r in runs)
    figures = [
        Figure(f"durable PUT throughput, {clients} clients", put, "writes/s",
               "Fernet + SQLite commit + XADD loop", raw, ">= 50% of raw", put >= 0.5 * raw),
    ]  # fmt: skip
    latencies = [ms for run in runs for ms in run.latencies_ms]
    details = {
        "clients": clients,
        "rounds": rounds,
        "warmup_s": warmup_s,
        "window_s": window_s,
        "raw_s": raw_s,
        "duration_s": round(time.monotonic() - started, 1),
        "service_per_round_per_s": [round(r.per_s, 1) for r in runs],
        "raw_per_round_per_s": [round(r.per_s, 1) for r in raws],
        "completed_in_windows": sum(r.completed for r in runs),
        "latency_ms": summary(latencies) if latencies else {},
        "service_cpu_percent_of_one_core": [round(100 * r.service_cpu_s / window_s, 1) for r in runs],
        "client_cpu_percent_of_one_core": [round(100 * r.client_cpu_s / window_s, 1) for r in runs],
        "statuses": {
            str(k): sum(r.statuses.get(k, 0) for r in runs) for k in sorted({k for r in runs for k in r.statuses})
        },
        "method": (
            f"{clients} asyncio clients on one keep-alive aiohttp session, each PUTting its own secret back to back; "
            "PUTs completing inside the window count; figure and raw are medians over rounds. Raw: one loop, "
            "seal + BEGIN IMMEDIATE/upsert/COMMIT (WAL, synchronous=FULL) + XADD, before and after each service "
            "round, on the same filesystem"
        ),
    }
    write_result("put_throughput", figures, details)
    print_figures(f"Durable PUT throughput ({rounds} rounds of {window_s:.0f} s)", figures)
    latency = details["latency_ms"]
    assert isinstance(latency, dict)
    print(
        f"  latency p50 {latency.get('p50', 0):.2f} ms, p99 {latency.get('p99', 0):.2f} ms; service per round "
        f"{details['service_per_round_per_s']}/s, raw {details['raw_per_round_per_s']}/s; "
        f"service CPU {details['service_cpu_percent_of_one_core']}% of a core"
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description="Durable PUT throughput beside a raw loop")
    parser.add_argument("--clients", type=int, default=CLIENTS)
    parser.add_argument("--warmup", type=float, default=WARMUP_S)
    parser.add_argument("--window", type=float, default=WINDOW_S)
    parser.add_argument("--raw", type=float, default=RAW_S)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args = parser.parse_args()
    asyncio.run(drive(args.clients, args.warmup, args.window, args.raw, args.rounds))


if __name__ == "__main__":
    main()
