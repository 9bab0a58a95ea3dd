"""Redis stopped while secrets are written: every write is still acknowledged, every event is
delivered once Redis is back, and the worker serves fresh values throughout."""

import asyncio
import time
from typing import Any

import msgspec
import pytest
import redis.asyncio as redis

from contract.events import decode_event
from contract.streams import FIELD_EVENT, FIELD_SEQ
from tests.e2e.conftest import E2EProject, Stack, StartStack
from tests.support.processes import RedisServer
from tests.support.worker import Seen

pytestmark = pytest.mark.timeout(45)

Expected = tuple[str, str, str, int, int]  # type, project, name, version, revision


async def stream_events(client: redis.Redis, stream: str) -> list[dict[str, Any]]:
    entries = await client.xrange(stream)
    return [{"seq": int(f[FIELD_SEQ]), **msgspec.to_builtins(decode_event(f[FIELD_EVENT]))} for _, f in entries]


async def wait_for_stream(
    client: redis.Redis, stream: str, count: int, timeout_s: float = 15.0
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            events = await stream_events(client, stream)
        except (redis.ConnectionError, OSError):
            events = []
        if len(events) >= count or time.monotonic() > deadline:
            return events
        await asyncio.sleep(0.05)


def as_expected(events: list[dict[str, Any]]) -> list[Expected]:
    return [(e["type"], e["project"], e["name"], e["version"], e["revision"]) for e in events if "name" in e]


async def write_during_outage(stack: Stack, project: E2EProject, revision: int) -> list[Expected]:
    """Overwrites, new secrets and a delete; each must be acknowledged. Returns the events they owe."""
    expected: list[Expected] = []
    for i in range(1, 11):
        body = await stack.put(project, "API_KEY", f"outage-{i}")
        revision += 1
        expected.append(("secret.put", project.id, "API_KEY", body["version"], revision))
        body = await stack.put(project, f"NEW_{i}", f"new-{i}")
        revision += 1
        expected.append(("secret.put", project.id, f"NEW_{i}", body["version"], revision))
    await stack.delete(project, "NEW_1")
    revision += 1
    expected.append(("secret.delete", project.id, "NEW_1", 1, revision))
    return expected


async def test_writes_during_a_redis_outage_are_acknowledged_and_all_delivered_after(
    start_stack: StartStack, private_redis: RedisServer
) -> None:
    stack = await start_stack(private_redis.url)
    project = await stack.create_project()
    await stack.put(project, "API_KEY", "before")
    worker = stack.in_process_worker()
    await worker.start()
    client = redis.Redis.from_url(private_redis.url, socket_connect_timeout=1)
    try:
        await worker.wait_connected()
        seen = Seen(worker)
        assert worker.cache is not None and worker.listener is not None
        async with worker.execution(project.id, project.engine_token) as ctx:
            assert await ctx.secrets.get("API_KEY") == "before"
            revision = await stack.revision(project)
            worker_log_before = len(stack.worker.log_text())

            private_redis.stop()
            expected = await write_during_outage(stack, project, revision)

            # The worker serves fresh values while the stream is down: nothing cached is trusted.
            await stack.put(project, "API_KEY", "during")
            expected.append(("secret.put", project.id, "API_KEY", 12, revision + len(expected) + 1))
            assert await ctx.secrets.get("API_KEY") == "during"
            assert await ctx.secrets.get("NEW_10") == "new-10"
            await stack.put(project, "API_KEY", "during-2")
            expected.append(("secret.put", project.id, "API_KEY", 13, revision + len(expected) + 1))
            assert await ctx.secrets.get("API_KEY") == "during-2"

            private_redis.start()  # the same port, an empty dataset
            events = await wait_for_stream(client, stack.events_stream, len(expected))
            assert as_expected(events) == expected  # every write, once, in order
            seqs = [e["seq"] for e in events]
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))

            await asyncio.wait_for(worker.listener.connected.wait(), 10)
            await stack.put(project, "API_KEY", "after")
            await seen.wait_for(project.id, await stack.revision(project))
            assert await ctx.secrets.get("API_KEY") == "after"

        # The worker process lost the stream, dropped its caches, and followed the stream again.
        await stack.worker.wait_for_log("following", after=worker_log_before, timeout_s=10)
        log = stack.worker.log_text()[worker_log_before:]
        lost = log.index("lost the events stream")
        assert log.index("dropped every cached snapshot", lost) < log.index("following", lost)
    finally:
        await worker.close()
        await client.aclose()


async def test_events_committed_while_redis_was_down_survive_a_service_restart(
    start_stack: StartStack, private_redis: RedisServer
) -> None:
    """The outbox is in SQLite: a service stopped before Redis came back publishes on its next start."""
    stack = await start_stack(private_redis.url)
    project = await stack.create_project()
    private_redis.stop()
    expected = await write_during_outage(stack, project, revision=0)
    assert stack.service.process.stop() == 0
    private_redis.start()

    client = redis.Redis.from_url(private_redis.url)
    try:
        assert await client.xlen(stack.events_stream) == 0
        stack.service.process.start()
        await stack.service.wait_healthy()
        events = await wait_for_stream(client, stack.events_stream, len(expected) + 1)
        assert as_expected(events) == expected
        assert events[0]["type"] == "project.create"
        await asyncio.sleep(0.3)  # and nothing is published twice
        assert len(await stream_events(client, stack.events_stream)) == len(expected) + 1
    finally:
        await client.aclose()
