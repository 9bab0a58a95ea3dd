"""The service killed with SIGKILL in the middle of a write burst, then restarted on the same database.

Every write that got a 2xx is there with its version; nothing is half-written (SQLite's integrity
check passes, every version has its event, every stored value decrypts to one that was sent); the
outbox drains: every committed change is published, and a restart publishes nothing twice.
"""

import asyncio
import signal
from collections import Counter, defaultdict
from dataclasses import dataclass

import pytest

from tests.faults.helpers import (
    Answer,
    FaultStack,
    Project,
    last_committed_seq,
    make_value,
    sqlite_query,
    wait_for_seq,
)
from worker.runtime import Worker
from worker.settings import WorkerSettings

pytestmark = pytest.mark.timeout(60)

NAMES = [f"S{i:02d}" for i in range(20)]
CLIENTS = 24
KILL_AFTER_ACKS = 400


@dataclass(frozen=True)
class Sent:
    name: str
    value: str
    answer: Answer


async def write_until_killed(stack: FaultStack, project: Project) -> list[Sent]:
    """CLIENTS writers, each overwriting names in turn, until the service dies under them."""
    sent: list[Sent] = []
    acks = 0
    killed = asyncio.Event()

    async def client(k: int) -> None:
        nonlocal acks
        i = k
        while not killed.is_set():
            name, value = NAMES[i % len(NAMES)], make_value(f"c{k}-{i}")
            answer = await stack.api.put_secret(project, name, value, timeout_s=10)
            sent.append(Sent(name, value, answer))
            if answer.status == 0:
                return  # the connection broke: the service is gone
            acks += answer.ok
            if acks >= KILL_AFTER_ACKS and not killed.is_set():
                killed.set()
                assert stack.service is not None
                stack.service.process.stop(signal.SIGKILL)
            i += CLIENTS

    await asyncio.gather(*(client(k) for k in range(CLIENTS)))
    return sent


async def test_a_service_killed_mid_burst_keeps_every_acknowledged_write_and_drains_its_outbox(
    stack: FaultStack,
) -> None:
    await stack.start_service()
    project = await stack.create_project()
    sent = await write_until_killed(stack, project)
    acked = [s for s in sent if s.answer.ok]
    unanswered = [s for s in sent if s.answer.status == 0]
    assert len(acked) >= KILL_AFTER_ACKS and unanswered, (len(acked), len(unanswered))
    assert all(s.answer.ok or s.answer.status == 0 for s in sent), {s.answer.status for s in sent}

    await stack.restart_service()

    # Nothing half-written: the file is sound, and every foreign key holds.
    assert sqlite_query(stack.db_path, "PRAGMA integrity_check") == [("ok",)]
    assert sqlite_query(stack.db_path, "PRAGMA foreign_key_check") == []

    # Every acknowledged write is there: its version or a later one (a write in flight when the
    # service died may have committed without its answer getting out).
    acked_versions: dict[str, dict[int, str]] = defaultdict(dict)
    for s in acked:
        acked_versions[s.name][int(s.answer.body["version"])] = s.value
    stored: dict[str, int] = {}
    for name in NAMES:
        meta = await stack.api.secret_meta(project, name)
        assert meta.status == 200, (name, meta.status)
        stored[name] = int(meta.body["version"])
        assert stored[name] >= max(acked_versions[name], default=0), name
    committed_unacked = sum(stored.values()) - len(acked)
    assert 0 <= committed_unacked <= len(unanswered), (committed_unacked, len(unanswered))

    # The outbox drains: every committed change is published, and the published rows are deleted.
    last_seq = last_committed_seq(stack.db_path)
    entries = await wait_for_seq(stack.redis.url, stack.streams.events, last_seq)
    await wait_for_empty_outbox(stack)
    seqs = Counter(entry.seq for entry in entries)
    duplicates = sum(seqs.values()) - len(seqs)
    assert sorted(seqs) == list(range(1, last_seq + 1)), "a committed change was never published"
    first_copy = {entry.seq: entry.payload for entry in reversed(entries)}
    assert all(entry.payload == first_copy[entry.seq] for entry in entries), "a republished event differs"
    assert duplicates == 0, f"{duplicates} events were published twice after the restart"

    # Every version of every secret has exactly one event, and the project's revision counts them all.
    puts = [entry.event for entry in entries if entry.event["type"] == "secret.put"]
    for name in NAMES:
        assert sorted(e["version"] for e in puts if e["name"] == name) == list(range(1, stored[name] + 1)), name
    revisions = [entry.event["revision"] for entry in entries]
    assert revisions == list(range(len(revisions)))  # project.create is revision 0
    engine = await stack.api.call("GET", f"/api/engine/{project.id}/secrets", headers=project.engine)
    assert engine.status == 200 and engine.body["revision"] == revisions[-1]

    # Every stored value decrypts, and is the acknowledged one (or one sent and never answered).
    worker = Worker(
        WorkerSettings(redis_url=stack.redis.url, api_url=stack.api.url, stream_prefix=stack.prefix),
        run_executions=False,
    )
    await worker.start()
    try:
        await worker.wait_connected()
        in_flight = {(s.name, s.value) for s in unanswered}
        async with worker.execution(project.id, project.engine_token) as ctx:
            for name in NAMES:
                value = await ctx.secrets.get(name)
                if stored[name] in acked_versions[name]:
                    same = value == acked_versions[name][stored[name]]
                    assert same, f"{name} holds another value than its acknowledged version"
                else:
                    sent_in_flight = (name, value) in in_flight
                    assert sent_in_flight, f"{name} holds a value nobody sent"
    finally:
        await worker.close()

    # And once restarted the service takes writes again, published right away.
    answer = await stack.api.put_secret(project, NAMES[0], make_value("after"))
    assert answer.status == 200 and answer.body["version"] == stored[NAMES[0]] + 1
    entries = await wait_for_seq(stack.redis.url, stack.streams.events, last_seq + 1, timeout_s=5)
    assert [e.seq for e in entries][-1] == last_seq + 1, "the restarted service does not publish"


async def test_a_service_killed_after_publishing_and_before_its_outbox_cleanup_keeps_publishing(
    stack: FaultStack,
) -> None:
    """The outbox rows of events already in the stream are still there at start-up: the restarted
    relay skips them all (publishing nothing twice) and publishes what comes next."""
    await stack.start_service()
    project = await stack.create_project()
    for name in NAMES[:5]:
        assert (await stack.api.put_secret(project, name, make_value("before"))).status == 201
    last_seq = last_committed_seq(stack.db_path)
    await wait_for_seq(stack.redis.url, stack.streams.events, last_seq, timeout_s=5)
    assert stack.service is not None
    stack.service.process.stop(signal.SIGKILL)  # within the idle second before published rows are deleted
    held = sqlite_query(stack.db_path, "SELECT seq FROM outbox")
    assert held, "the outbox was cleaned before the kill; the scenario did not happen"

    await stack.restart_service()
    answer = await stack.api.put_secret(project, NAMES[0], make_value("after"))
    assert answer.status == 200
    entries = await wait_for_seq(stack.redis.url, stack.streams.events, last_seq + 1, timeout_s=5)
    assert [entry.seq for entry in entries] == list(range(1, last_seq + 2)), "not published, or published twice"
    await wait_for_empty_outbox(stack)


def outbox_rows(stack: FaultStack) -> int:
    return int(sqlite_query(stack.db_path, "SELECT count(*) FROM outbox")[0][0])


async def wait_for_empty_outbox(stack: FaultStack, timeout_s: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while (left := outbox_rows(stack)) and loop.time() < deadline:  # noqa: ASYNC110 - another process's file
        await asyncio.sleep(0.1)
    assert left == 0, f"{left} events stayed in the outbox"
