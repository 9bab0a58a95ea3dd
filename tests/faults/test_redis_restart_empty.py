"""Redis restarted empty (no persistence: every stream and the consumer group are gone).

The workers notice (they log it), drop every cached snapshot, serve fresh values afterwards, and
still run executions: the executions consumer group is created again. While Redis is away a
webhook caller gets a quick 503, not a hang.
"""

import asyncio

import pytest

from tests.faults.conftest import Target
from tests.faults.helpers import FaultStack, Project, make_value, wait_until_acked
from tests.support.worker import Seen
from worker.runtime import Worker
from worker.settings import WorkerSettings

pytestmark = pytest.mark.timeout(60)


def probe(target: Target) -> dict[str, object]:
    config = {"method": "POST", "url": target.url("/echo"), "json": {"token": "${ secrets.API_TOKEN }"}}
    return {"nodes": [{"id": "probe", "type": "http_request", "config": config}]}


async def test_workers_drop_their_caches_and_run_executions_after_redis_restarts_empty(
    stack: FaultStack, target: Target
) -> None:
    await stack.start_service()
    # A worker may fail to ack on a connection Redis closed (its pool held it through the restart):
    # the message is reclaimed and skipped after RECLAIM_AFTER_MS, which is short here.
    workers = [await stack.start_worker(f"w{i}", BACKEND_SECRETS_RECLAIM_AFTER_MS="1000") for i in (1, 2)]
    project = await stack.create_project()
    first = make_value("first")
    assert (await stack.api.put_secret(project, "API_TOKEN", first)).status == 201
    assert (await stack.api.put_workflow(project, "probe", probe(target))).status in (200, 201)
    for _ in range(4):  # both workers get to cache the project's snapshot
        assert (await stack.api.hook(project, "probe")).status == 200
    assert [r["json"]["token"] == first for r in target.requests] == [True] * 4

    settings = WorkerSettings(
        redis_url=stack.redis.url, api_url=stack.api.url, stream_prefix=stack.prefix, listen_block_ms=200
    )
    worker = Worker(settings, run_executions=False)
    await worker.start()
    try:
        await worker.wait_connected()
        assert worker.cache is not None and worker.listener is not None
        async with worker.execution(project.id, project.engine_token) as ctx:
            cached = await ctx.secrets.get("API_TOKEN") == first
        assert cached, "the worker object does not serve the first value"
        assert worker.cache.state(project.id).snapshot is not None
        drops = worker.cache.stats["drops"]
        log_at = [len(w.log_text()) for w in workers]

        stack.redis.stop()
        # A webhook while Redis is away is answered at once: 503, the execution is not lost silently.
        answer = await stack.api.call("POST", f"/hooks/{project.id}/probe", json={})
        assert answer.status == 503 and answer.error_code() == "queue_unavailable", answer
        assert answer.elapsed_s < 3.0, answer.elapsed_s
        stack.redis.start()  # the same port, an empty dataset

        # Every worker noticed, dropped its caches, and follows the (new, empty) stream again.
        for process, offset in zip(workers, log_at, strict=True):
            await process.wait_for_log("following", after=offset, timeout_s=10)
            log = process.log_text()[offset:]
            lost = log.index("lost the events stream")
            assert log.index("dropped every cached snapshot", lost) < log.index("following", lost)
        await asyncio.wait_for(worker.listener.connected.wait(), 10)
        assert worker.cache.stats["drops"] > drops
        assert worker.cache.state(project.id).snapshot is None

        # Fresh values: a change after the restart reaches the worker object at once...
        seen = Seen(worker)
        second = make_value("second")
        assert (await stack.api.put_secret(project, "API_TOKEN", second)).status == 200
        revision = await current_revision(stack, project)
        await seen.wait_for(project.id, revision)
        async with worker.execution(project.id, project.engine_token) as ctx:
            fresh = await ctx.secrets.get("API_TOKEN") == second
        assert fresh, "the worker object serves a stale value after the restart"

        # ...and executions run again (the consumer group is back), with the new value, each once.
        answers = await asyncio.gather(*(stack.api.hook(project, "probe", timeout_s=20) for _ in range(8)))
        assert [a.status for a in answers] == [200] * 8, [(a.status, a.error_code()) for a in answers]
        assert [r["json"]["token"] == second for r in target.requests[4:]] == [True] * 8
        assert await wait_until_acked(stack.redis.url, stack.streams.executions) == 0
        assert len(target.requests) == 4 + 8, "an execution ran twice"
    finally:
        await worker.close()


async def current_revision(stack: FaultStack, project: Project) -> int:
    answer = await stack.api.call("GET", f"/api/engine/{project.id}/secrets", headers=project.engine)
    assert answer.status == 200, answer
    return int(answer.body["revision"])
