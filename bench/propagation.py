"""Propagation: from a PUT's 2xx to a worker serving the new value, beside raw XADD -> XREAD.

Three processes besides Redis and the service:
- this one (the driver) PUTs a change, stamps CLOCK_MONOTONIC when the 2xx arrives, and waits;
- a worker (`--role worker`): the worker library (Worker, its listener and snapshot cache) with
  one ExecutionContext kept open; the listener's `on_event` hook wakes it, it re-resolves
  `await ctx.secrets.get(NAME)` and stamps the moment it holds the new value, and says how the
  new ciphertext came: from the change's engine delta in Redis (read with the event, or after
  it), or by a fetch of the snapshot;
- a raw reader (`--role xread`): XREAD BLOCK on a plain stream, stamping each entry's arrival,
  while the driver XADDs entries that carry the moment they were sent.

`time.monotonic_ns()` is CLOCK_MONOTONIC, one clock for every process on a Linux machine, so
stamps taken in different processes subtract. Changes go one at a time (PUT, wait until
served, next), in alternating blocks of raw and full measurements so both see the same machine.
Values carry their index, so the worker reports which change it serves, never the value.
"""

import argparse
import asyncio
import os
import sys
import time
from dataclasses import dataclass, field
from typing import cast

import aiohttp
import redis.asyncio as redis

from bench.harness import (
    REDIS_URL,
    Figure,
    Project,
    Service,
    bench_value,
    create_project,
    print_figures,
    running_service,
    stop_process,
    summary,
    value_index,
    write_result,
)
from contract import loops
from contract.engine import EngineDelta, EngineSnapshot
from worker.runtime import Worker
from worker.settings import WorkerSettings

NAME = "BENCH_PROPAGATION"
CHANGES = 1_000
WARMUP = 100
BLOCK = 100
SOURCES = ("with_event", "delta", "fetch", "none")  # how a new value can come (_source)
PAUSE_S = 0.002  # between changes, so each one finds both readers idle in their blocking read
CHANGE_TIMEOUT_S = 5.0
RUN_TIMEOUT_S = 300.0
CHILD_LIFETIME_S = 600.0  # a child whose driver vanished exits on its own

StreamReply = list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]] | None


# --- the child processes -------------------------------------------------------------------------


def _emit(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def worker_role() -> None:
    settings = WorkerSettings(
        redis_url=REDIS_URL, api_url=os.environ["BENCH_API_URL"], stream_prefix=os.environ["BENCH_PREFIX"]
    )
    project, token = os.environ["BENCH_PROJECT"], os.environ["BENCH_ENGINE_TOKEN"]
    worker = Worker(settings)
    await worker.start()
    try:
        await worker.wait_connected()
        assert worker.listener is not None
        changed = asyncio.Event()
        event_at = [0]

        def on_event(_event: object) -> None:
            event_at[0] = time.monotonic_ns()
            changed.set()

        worker.listener.on_event = on_event
        fetched, read = _time_fetches(worker), _time_delta_reads(worker)
        async with asyncio.timeout(CHILD_LIFETIME_S), worker.execution(project, token) as ctx:
            last = value_index(await ctx.secrets.get(NAME))
            counted = _arrivals(worker)
            _emit("ready")
            while True:
                await changed.wait()
                changed.clear()
                seen = event_at[0]
                value = await ctx.secrets.get(NAME)
                served = time.monotonic_ns()
                index = value_index(value)
                if index != last:
                    source, counted = _source(worker, counted)
                    # A delta that came with its event has no read of its own: it took no time after it.
                    stamps = {"delta": read, "fetch": fetched}.get(source, [seen, seen])
                    _emit(f"{index} {seen} {source} {stamps[0]} {stamps[1]} {served}")
                    last = index
    finally:
        await worker.close()


def _time_fetches(worker: Worker) -> list[int]:
    """Stamp the start and end of each snapshot fetch (a diagnostic: where the time goes)."""
    assert worker.cache is not None
    cache = worker.cache
    inner = cache._fetch
    stamps = [0, 0]

    async def timed(project: str, token: str) -> EngineSnapshot:
        stamps[0] = time.monotonic_ns()
        try:
            return await inner(project, token)
        finally:
            stamps[1] = time.monotonic_ns()

    cache._fetch = timed
    return stamps


def _time_delta_reads(worker: Worker) -> list[int]:
    """Stamp the start and end of each engine delta read (the GET of the relay's key in Redis)."""
    assert worker.listener is not None and worker.listener.deltas is not None
    reader = worker.listener.deltas
    inner = reader.load
    stamps = [0, 0]

    async def timed(origin: str, seq: int) -> EngineDelta | None:
        stamps[0] = time.monotonic_ns()
        try:
            return await inner(origin, seq)
        finally:
            stamps[1] = time.monotonic_ns()

    reader.load = timed  # type: ignore[method-assign]
    return stamps


Arrivals = tuple[int, int, int]


def _arrivals(worker: Worker) -> Arrivals:
    assert worker.cache is not None
    stats = worker.cache.stats
    return stats["deltas_at_hand"], stats["deltas"], stats["fetches"]


def _source(worker: Worker, before: Arrivals) -> tuple[str, Arrivals]:
    """How the value just served came, from the cache's counters: "with_event" (patched from the
    change's engine delta, read in the same round trip as the event), "delta" (the same, read with
    a GET after the event), "fetch" (the engine endpoint; also after a delta that could not be
    used) or "none" (nothing moved: already at hand)."""
    now = _arrivals(worker)
    if now[2] > before[2]:
        return "fetch", now
    if now[0] > before[0]:
        return "with_event", now
    return ("delta" if now[1] > before[1] else "none"), now


async def xread_role() -> None:
    stream = os.environ["BENCH_RAW_STREAM"]
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=10)
    try:
        last: bytes | str = "0-0"  # the stream is new (a unique prefix): nothing sent before this is missed
        _emit("ready")
        async with asyncio.timeout(CHILD_LIFETIME_S):
            while True:
                reply = cast(StreamReply, await client.xread({stream: last}, count=100, block=1000))
                arrived = time.monotonic_ns()
                for _stream, entries in reply or ():
                    for entry_id, fields in entries:
                        _emit(f"{int(fields[b'i'])} {arrived}")
                        last = entry_id
    finally:
        await client.aclose()


# --- the driver ----------------------------------------------------------------------------------


@dataclass
class Samples:
    recording: bool = False  # off during warm-up
    raw_ns: list[int] = field(default_factory=list)
    full_ns: list[int] = field(default_factory=list)
    event_ns: list[int] = field(default_factory=list)  # 2xx -> the worker's listener saw the event
    served_ns: list[int] = field(default_factory=list)  # event seen -> new value served
    sources: list[str] = field(default_factory=list)  # how each new value came: one of SOURCES
    # Per source ("with_event": no read; "delta": the GET of the engine delta; "fetch": the snapshot):
    to_read_ns: dict[str, list[int]] = field(default_factory=dict)  # event seen -> the read starts
    read_ns: dict[str, list[int]] = field(default_factory=dict)  # the read itself
    after_read_ns: dict[str, list[int]] = field(default_factory=dict)  # read done -> value served (decrypt)

    def add_breakdown(self, source: str, seen: int, started: int, ended: int, served: int) -> None:
        self.sources.append(source)
        self.to_read_ns.setdefault(source, []).append(started - seen)
        self.read_ns.setdefault(source, []).append(ended - started)
        self.after_read_ns.setdefault(source, []).append(served - ended)


async def _spawn(role: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.propagation",
        "--role",
        role,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
    )
    await _expect(proc, "ready", timeout_s=20.0)
    return proc


async def _readline(proc: asyncio.subprocess.Process, timeout_s: float = CHANGE_TIMEOUT_S) -> str:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), timeout_s)
    if not line:
        raise RuntimeError(f"a bench child process (pid {proc.pid}) exited early")
    return line.decode().strip()


async def _expect(proc: asyncio.subprocess.Process, expected: str, timeout_s: float) -> None:
    line = await _readline(proc, timeout_s)
    if line != expected:
        raise RuntimeError(f"a bench child process said {line!r} instead of {expected!r}")


async def _put(session: aiohttp.ClientSession, url: str, project: Project, index: int) -> int:
    """PUT change `index`; returns the CLOCK_MONOTONIC moment its 2xx status line arrived."""
    async with session.put(url, json={"value": bench_value(index)}, headers=project.dashboard) as response:
        acked = time.monotonic_ns()
        await response.read()
        if response.status not in (200, 201):
            raise RuntimeError(f"PUT answered {response.status}")
    return acked


async def _full_block(
    session: aiohttp.ClientSession,
    url: str,
    project: Project,
    worker: asyncio.subprocess.Process,
    first: int,
    n: int,
    samples: Samples,
) -> None:
    for index in range(first, first + n):
        await asyncio.sleep(PAUSE_S)
        acked = await _put(session, url, project, index)
        while True:
            served_index, seen, source, read_start, read_end, served = _parse_served(await _readline(worker))
            if served_index == index:
                break
        if samples.recording:
            samples.full_ns.append(served - acked)
            samples.event_ns.append(seen - acked)
            samples.served_ns.append(served - seen)
            samples.add_breakdown(source, seen, read_start, read_end, served)


def _parse_served(line: str) -> tuple[int, int, str, int, int, int]:
    index, seen, source, started, ended, served = line.split()
    return int(index), int(seen), source, int(started), int(ended), int(served)


async def _raw_block(
    client: redis.Redis, stream: str, reader: asyncio.subprocess.Process, first: int, n: int, samples: Samples
) -> None:
    for index in range(first, first + n):
        await asyncio.sleep(PAUSE_S)
        sent = time.monotonic_ns()
        await client.xadd(stream, {b"i": str(index), b"t": str(sent)})
        while True:
            read_index, arrived = (int(part) for part in (await _readline(reader)).split())
            if read_index == index:
                break
        if samples.recording:
            samples.raw_ns.append(arrived - sent)


async def _measure(service: Service, changes: int, warmup: int) -> Samples:
    samples = Samples()
    async with aiohttp.ClientSession() as session:
        project = await create_project(session, service)
        url = f"{service.base_url}/api/projects/{project.id}/secrets/{NAME}"
        await _put(session, url, project, 0)
        raw_stream = f"{service.prefix}:bench-raw"
        worker = await _spawn(
            "worker",
            {
                "BENCH_API_URL": service.base_url,
                "BENCH_PREFIX": service.prefix,
                "BENCH_PROJECT": project.id,
                "BENCH_ENGINE_TOKEN": project.engine_token,
            },
        )
        reader: asyncio.subprocess.Process | None = None
        client = redis.Redis.from_url(REDIS_URL)
        try:
            reader = await _spawn("xread", {"BENCH_RAW_STREAM": raw_stream})
            index = 1
            await _raw_block(client, raw_stream, reader, index, warmup, samples)
            await _full_block(session, url, project, worker, index, warmup, samples)
            index += warmup
            samples.recording = True
            while len(samples.full_ns) < changes:
                n = min(BLOCK, changes - len(samples.full_ns))
                await _raw_block(client, raw_stream, reader, index, n, samples)
                await _full_block(session, url, project, worker, index, n, samples)
                index += n
        finally:
            await client.aclose()
            for proc in (worker, reader):
                if proc is not None:
                    await stop_process(proc)
    return samples


def _ms(ns: list[int]) -> list[float]:
    return [v / 1e6 for v in ns]


def _by_source(samples: Samples) -> dict[str, dict[str, float]]:
    """Event seen -> value served, split by how the value came; a way no value came is left out."""
    names = {
        "with_event": "engine_delta_read_with_the_event",
        "delta": "engine_delta_redis_get",
        "fetch": "snapshot_fetch_http_get",
    }
    stages: dict[str, dict[str, float]] = {}
    for source, read in names.items():
        if source in samples.read_ns:
            stages[f"  event_seen_to_{source}_start"] = summary(_ms(samples.to_read_ns[source]))
            stages[f"  {read}"] = summary(_ms(samples.read_ns[source]))
            stages[f"  {source}_done_to_value_served"] = summary(_ms(samples.after_read_ns[source]))
    return stages


async def drive(changes: int, warmup: int) -> list[Figure]:
    started = time.monotonic()
    async with asyncio.timeout(RUN_TIMEOUT_S), running_service("propagation") as service:
        samples = await _measure(service, changes, warmup)
    full, raw = summary(_ms(samples.full_ns)), summary(_ms(samples.raw_ns))
    figures = [
        Figure("propagation p50 (PUT 2xx -> worker serves)", full["p50"], "ms", "XADD -> XREAD p50", raw["p50"],
               "<= 2x raw", full["p50"] <= 2 * raw["p50"]),
        Figure("propagation p99 (PUT 2xx -> worker serves)", full["p99"], "ms", "XADD -> XREAD p99", raw["p99"],
               "<= 3 ms", full["p99"] <= 3.0),
    ]  # fmt: skip
    details = {
        "changes": changes,
        "warmup": warmup,
        "pause_between_changes_ms": PAUSE_S * 1000,
        "duration_s": round(time.monotonic() - started, 1),
        "propagation_ms": full,
        "raw_xadd_xread_ms": raw,
        "breakdown_ms": {
            "put_2xx_to_event_seen": summary(_ms(samples.event_ns)),
            "event_seen_to_value_served": summary(_ms(samples.served_ns)),
            **_by_source(samples),
        },
        "new_value_came_by": {source: samples.sources.count(source) for source in SOURCES},
        "served_before_2xx": sum(1 for v in samples.full_ns if v < 0),
        "method": (
            "sequential changes, alternating blocks of 100 raw and 100 full; the driver stamps "
            "CLOCK_MONOTONIC when the PUT's 2xx status line arrives, the worker process when "
            "ctx.secrets.get() returns the new value; raw: one process XADDs a stamped entry, "
            "another (XREAD BLOCK, redis.asyncio as in the worker) stamps its arrival; new_value_came_by: "
            "from the worker cache's counters, the engine delta (read in the XREAD's round trip, "
            "or by a GET after it) or a snapshot fetch (HTTP)"
        ),
    }
    write_result("propagation", figures, details)
    print_figures(f"Propagation ({changes} changes, {warmup} warm-up)", figures)
    breakdown = details["breakdown_ms"]
    assert isinstance(breakdown, dict)
    for part, stats in breakdown.items():
        print(f"  {part:<44} p50 {stats['p50']:.3f} ms, p99 {stats['p99']:.3f} ms (n={stats['count']:.0f})")
    print(f"  new value came by: {details['new_value_came_by']}")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--role", choices=("driver", "worker", "xread"), default="driver")
    parser.add_argument("--changes", type=int, default=CHANGES)
    parser.add_argument("--warmup", type=int, default=WARMUP)
    args = parser.parse_args()
    if args.role == "worker":
        loops.run(worker_role())  # the loop `python -m worker` runs on
    elif args.role == "xread":
        loops.run(xread_role())
    else:
        asyncio.run(drive(cast(int, args.changes), cast(int, args.warmup)))


if __name__ == "__main__":
    main()
