"""The service and the worker as processes on the real Redis: a saved secret resolves in the engine
at once, an overwrite reaches a running execution, a delete stops it resolving, and projects stay apart.

The worker process has no execution intake in this issue, so resolution is driven by a worker object
in the test process, pointed at the service process; the worker process runs beside it and its log
shows that it follows the same stream."""

import asyncio

import pytest
import redis.asyncio as redis

from tests.e2e.conftest import StartStack
from tests.support.worker import Seen, render_secrets
from worker.errors import SecretNotFound, SnapshotUnavailable

pytestmark = pytest.mark.timeout(30)


async def test_put_overwrite_delete_as_an_execution_sees_them(
    start_stack: StartStack, redis_url: str, redis_client: redis.Redis
) -> None:
    stack = await start_stack(redis_url)
    assert f"following {stack.events_stream}" in stack.worker.log_text()
    project = await stack.create_project()
    worker = stack.in_process_worker()
    await worker.start()
    try:
        await worker.wait_connected()
        seen = Seen(worker)

        # put -> the worker resolves it, right after the PUT's 2xx, with no event awaited
        await stack.put(project, "STRIPE_KEY", "sk_first")
        async with worker.execution(project.id, project.engine_token) as ctx:
            assert await ctx.secrets.get("STRIPE_KEY") == "sk_first"
            node = {"headers": {"Authorization": "Bearer ${ secrets.STRIPE_KEY }"}, "key": "${ctx.secrets.STRIPE_KEY}"}
            assert await render_secrets(ctx, node) == {
                "headers": {"Authorization": "Bearer sk_first"},
                "key": "sk_first",
            }

            # overwrite -> the next reference in this already-running execution sees the new value
            await stack.put(project, "STRIPE_KEY", "sk_second")
            await seen.wait_for(project.id, await stack.revision(project))
            assert await ctx.secrets.get("STRIPE_KEY") == "sk_second"
            assert await render_secrets(ctx, node) == {
                "headers": {"Authorization": "Bearer sk_second"},
                "key": "sk_second",
            }

            # delete -> secret_not_found, at once, in the same execution
            await stack.delete(project, "STRIPE_KEY")
            await seen.wait_for(project.id, await stack.revision(project))
            with pytest.raises(SecretNotFound) as caught:
                await render_secrets(ctx, node)
            assert caught.value.code == "secret_not_found" and "STRIPE_KEY" in caught.value.message

        async with worker.execution(project.id, project.engine_token) as fresh:
            with pytest.raises(SecretNotFound):
                await fresh.secrets.get("STRIPE_KEY")
    finally:
        await worker.close()
    assert stack.worker.running and stack.service.process.running


async def test_a_new_secret_resolves_right_after_its_put(
    start_stack: StartStack, redis_url: str, redis_client: redis.Redis
) -> None:
    """A secret created a moment ago resolves even if its event is still on the way (one refresh on a miss)."""
    stack = await start_stack(redis_url)
    project = await stack.create_project()
    worker = stack.in_process_worker(miss_refresh_interval_s=0.05)
    await worker.start()
    try:
        await worker.wait_connected()
        async with worker.execution(project.id, project.engine_token) as ctx:
            for i in range(10):
                await stack.put(project, f"NEW_{i}", f"value-{i}")
                assert await ctx.secrets.get(f"NEW_{i}") == f"value-{i}"
                await asyncio.sleep(0.06)  # the miss refresh is rate-limited; space the new names out
    finally:
        await worker.close()


async def test_cross_project_tokens_get_nothing(
    start_stack: StartStack, redis_url: str, redis_client: redis.Redis
) -> None:
    stack = await start_stack(redis_url)
    mine, theirs = await stack.create_project("Mine"), await stack.create_project("Theirs")
    await stack.put(mine, "DB_PASSWORD", "canary-cross-project-4417")
    await stack.put(theirs, "DB_PASSWORD", "theirs")

    engine = await stack.call("GET", f"/api/engine/{mine.id}/secrets", headers=theirs.engine)
    listing = await stack.call("GET", f"/api/projects/{mine.id}/secrets", headers=theirs.dashboard)
    one = await stack.call("GET", f"/api/projects/{mine.id}/secrets/DB_PASSWORD", headers=theirs.dashboard)
    overwrite = await stack.call(
        "PUT", f"/api/projects/{mine.id}/secrets/DB_PASSWORD", json={"value": "x"}, headers=theirs.dashboard
    )
    delete = await stack.call("DELETE", f"/api/projects/{mine.id}/secrets/DB_PASSWORD", headers=theirs.dashboard)
    engine_on_dashboard = await stack.call("GET", f"/api/projects/{mine.id}/secrets", headers=mine.engine)
    for status, body in (engine, listing, one, overwrite, delete):
        assert status == 404 and set(body) == {"error"}, body
    assert engine_on_dashboard[0] == 403
    assert not any(b"canary-cross-project-4417" in body for body in stack.responses)

    # Through a worker: their engine token cannot load my project's secrets (a cold cache asks the API,
    # which answers 404); my own token loads mine, theirs loads theirs.
    worker = stack.in_process_worker()
    await worker.start()
    try:
        await worker.wait_connected()
        with pytest.raises(SnapshotUnavailable):
            async with worker.execution(mine.id, theirs.engine_token) as ctx:
                await ctx.secrets.get("DB_PASSWORD")
        async with worker.execution(mine.id, mine.engine_token) as ctx:
            assert await ctx.secrets.get("DB_PASSWORD") == "canary-cross-project-4417"
        async with worker.execution(theirs.id, theirs.engine_token) as ctx:
            assert await ctx.secrets.get("DB_PASSWORD") == "theirs"
    finally:
        await worker.close()
