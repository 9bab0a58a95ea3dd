"""Redis stopped for 5 s in the middle of a burst of 1,000 writes, then started again.

Every write is acknowledged and stored at the version it was acknowledged with; every event comes
out of the stream exactly as the outbox held it (no gap, in order, no duplicate); and the worker
(a `python -m worker` process running an execution, and a worker object here) serves the newest
values. The redis-server keeps an append-only file, as a production one does, so what it had
accepted before it stopped is still in the stream after it started.
"""

import asyncio
import json
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

import pytest

from tests.faults.conftest import Target
from tests.faults.helpers import (
    Answer,
    FaultStack,
    Project,
    StreamEntry,
    last_committed_seq,
    make_value,
    sqlite_query,
    wait_for_seq,
)
from tests.support.worker import Seen
from worker.runtime import Worker
from worker.settings import WorkerSettings

pytestmark = pytest.mark.timeout(90)

WRITES = 1_000
NAMES = [f"K{i:02d}" for i in range(40)]
SPACING_S = 0.008  # 1,000 writes over ~8 s: the outage sits inside the burst
CONCURRENCY = 32
OUTAGE_AT_S, OUTAGE_S = 1.5, 5.0


@dataclass(frozen=True)
class Write:
    name: str
    value: str
    answer: Answer
    at: float  # monotonic time of the answer


async def burst(stack: FaultStack, project: Project) -> list[Write]:
    loop = asyncio.get_running_loop()
    slots = asyncio.Semaphore(CONCURRENCY)
    started = loop.time()

    async def one(i: int) -> Write:
        await asyncio.sleep(max(0.0, started + i * SPACING_S - loop.time()))
        name, value = NAMES[i % len(NAMES)], make_value(f"w{i}")
        async with slots:
            answer = await stack.api.put_secret(project, name, value)
        return Write(name, value, answer, time.monotonic())

    return list(await asyncio.gather(*(one(i) for i in range(WRITES))))


def probe_workflow(target: Target) -> dict[str, object]:
    """One http_request carrying every secret to the local target, which records what it got."""
    body = {name: f"${{ secrets.{name} }}" for name in NAMES}
    return {
        "nodes": [
            {
                "id": "probe",
                "type": "http_request",
                "config": {"method": "POST", "url": target.url("/echo"), "json": body},
            }
        ]
    }


async def test_a_redis_outage_inside_a_burst_of_1000_writes_loses_and_duplicates_nothing(
    durable_stack: FaultStack, target: Target
) -> None:
    stack = durable_stack
    await stack.start_service()
    await stack.start_worker("worker")
    project = await stack.create_project()
    for name in NAMES:
        assert (await stack.api.put_secret(project, name, make_value("initial"))).status == 201
    assert (await stack.api.put_workflow(project, "probe", probe_workflow(target))).status in (200, 201)
    baseline_seq = last_committed_seq(stack.db_path)

    settings = WorkerSettings(
        redis_url=stack.redis.url, api_url=stack.api.url, stream_prefix=stack.prefix, listen_block_ms=200
    )
    worker = Worker(settings, run_executions=False)
    await worker.start()
    try:
        await worker.wait_connected()
        seen = Seen(worker)
        worker_log_at = len(stack.workers[0].log_text())

        async def outage() -> tuple[float, float, float, float, dict[int, bytes]]:
            await asyncio.sleep(OUTAGE_AT_S)
            stack.redis.stop()
            stopped, stopped_wall = time.monotonic(), time.time()
            await asyncio.sleep(OUTAGE_S)
            held = dict(sqlite_query(stack.db_path, "SELECT seq, payload FROM outbox ORDER BY seq"))
            stack.redis.start()
            return stopped, stopped_wall, time.monotonic(), time.time(), held

        outcome = await asyncio.gather(burst(stack, project), outage())
        writes, (stopped, stopped_wall, restarted, restarted_wall, outbox) = outcome

        # Every write was acknowledged, during the outage too, with consecutive versions per name.
        failed = [(w.name, w.answer.status, w.answer.error_code()) for w in writes if not w.answer.ok]
        assert not failed, f"{len(failed)} writes failed, e.g. {failed[:5]}"
        during = [w for w in writes if stopped < w.at < restarted]
        assert len(during) > 200, f"only {len(during)} writes were answered while Redis was down"
        acked: dict[str, dict[int, str]] = defaultdict(dict)
        for write in writes:
            acked[write.name][int(write.answer.body["version"])] = write.value
        for name in NAMES:
            versions = sorted(int(w.answer.body["version"]) for w in writes if w.name == name)
            assert versions == list(range(2, 2 + WRITES // len(NAMES))), name

        # Every acknowledged write is in the store: its metadata shows the last acknowledged version.
        for name in NAMES:
            meta = await stack.api.secret_meta(project, name)
            assert meta.status == 200 and meta.body["version"] == max(acked[name]), (name, meta.status)

        # Every event, exactly as the outbox held it: no gap, in order, no duplicate.
        last_seq = last_committed_seq(stack.db_path)
        assert last_seq == baseline_seq + WRITES
        entries = await wait_for_seq(stack.redis.url, stack.streams.events, last_seq)
        assert_complete_and_in_order(entries, last_seq)
        assert len(outbox) > 200, f"only {len(outbox)} events waited in the outbox during the outage"
        by_seq = {entry.seq: entry for entry in entries}
        assert all(by_seq[seq].payload == bytes(payload) for seq, payload in outbox.items())
        burst_events = [entry.event for entry in entries if entry.seq > baseline_seq]
        assert {e["type"] for e in burst_events} == {"secret.put"}
        assert sorted((e["name"], e["version"]) for e in burst_events) == sorted(
            (name, version) for name, versions in acked.items() for version in versions
        )
        revisions = [e["revision"] for e in burst_events]
        assert revisions == list(range(revisions[0], revisions[0] + WRITES))
        for name in NAMES:  # per name, versions come out in the order they were written
            versions = [e["version"] for e in burst_events if e["name"] == name]
            assert versions == sorted(versions), name

        # The worker object serves the newest values...
        await seen.wait_for(project.id, revisions[-1], timeout_s=10)
        async with worker.execution(project.id, project.engine_token) as ctx:
            for name in NAMES:
                fresh = await ctx.secrets.get(name) == acked[name][max(acked[name])]
                assert fresh, f"the worker object serves a stale {name}"

        # ...and so does the worker process, in an execution, after it lost and found the stream.
        await stack.workers[0].wait_for_log("following", after=worker_log_at, timeout_s=10)
        log = stack.workers[0].log_text()[worker_log_at:]
        lost = log.index("lost the events stream")
        assert log.index("dropped every cached snapshot", lost) < log.index("following", lost)
        # While Redis was down the worker never claimed to follow the stream (and so trusted no cache).
        following = [line_time(line) for line in log.splitlines() if "following" in line]
        assert not [t for t in following if stopped_wall + 0.2 < t < restarted_wall - 0.5], "following while down"
        answer = await stack.api.hook(project, "probe")
        assert answer.status == 200, (answer.status, answer.error_code())
        sent = target.requests[-1]["json"]
        stale = [name for name in NAMES if sent[name] != acked[name][max(acked[name])]]
        assert not stale, f"the worker process sent stale values of {stale}"
    finally:
        await worker.close()


def line_time(line: str) -> float:
    return datetime.fromisoformat(json.loads(line)["timestamp"]).timestamp()


def assert_complete_and_in_order(entries: list[StreamEntry], last_seq: int) -> None:
    origins = {entry.origin for entry in entries}
    assert len(origins) == 1, origins
    seqs = [entry.seq for entry in entries]
    duplicates = len(seqs) - len(set(seqs))
    assert duplicates == 0, f"{duplicates} events were published twice"
    assert seqs == list(range(1, last_seq + 1)), "events are missing or out of order"
    assert all(entry.event["seq"] == entry.seq for entry in entries)
