"""An execution's secrets: decrypted on first use, cached for the execution only, dropped at its end,
after the TTL, and at once when a change event for the project arrives."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as redis
from aiohttp.test_utils import TestClient

from contract.sealing import open_sealed
from tests.conftest import CreateProject, Project
from tests.support.worker import Seen
from tests.worker.conftest import api_url, delete_secret, put_secret
from worker import context as context_module
from worker.context import ExecutionContext
from worker.errors import SecretNotFound, SecretsNotLoaded
from worker.runtime import Worker
from worker.settings import WorkerSettings
from worker.snapshots import SnapshotCache

pytestmark = pytest.mark.timeout(15)


class CountingOpen:
    """Counts decryptions, the observable cost of a value-cache miss."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def __call__(self, *args: Any, **kwargs: Any) -> str:
        self.names.append(args[4])
        return open_sealed(*args, **kwargs)


@pytest.fixture
def decryptions(monkeypatch: pytest.MonkeyPatch) -> CountingOpen:
    counter = CountingOpen()
    monkeypatch.setattr(context_module, "open_sealed", counter)
    return counter


@pytest.fixture
async def worker(api: TestClient, redis_url: str, prefix: str, redis_client: redis.Redis) -> AsyncIterator[Worker]:
    """A worker object following this test's events stream, against the app's real port."""
    settings = WorkerSettings(redis_url=redis_url, api_url=api_url(api), stream_prefix=prefix, listen_block_ms=200)
    worker = Worker(settings)
    await worker.start()
    await worker.wait_connected()
    yield worker
    await worker.close()


@pytest.fixture
def seen(worker: Worker) -> Seen:
    return Seen(worker)


async def test_a_value_is_decrypted_once_per_execution(
    api: TestClient, project: Project, cache: SnapshotCache, decryptions: CountingOpen
) -> None:
    await put_secret(api, project, "API_KEY", "v1")
    async with ExecutionContext(cache, project.id, project.engine_token, 30.0) as ctx:
        assert ctx.secrets.API_KEY == "v1"
        assert await ctx.secrets.get("API_KEY") == "v1"
        assert ctx.secrets.API_KEY == "v1"
        assert decryptions.names == ["API_KEY"]
    async with ExecutionContext(cache, project.id, project.engine_token, 30.0) as other:
        assert other.secrets.API_KEY == "v1"  # a new execution decrypts for itself
    assert decryptions.names == ["API_KEY", "API_KEY"]


async def test_the_value_cache_expires_after_the_ttl(
    api: TestClient, project: Project, cache: SnapshotCache, decryptions: CountingOpen
) -> None:
    await put_secret(api, project, "API_KEY", "v1")
    async with ExecutionContext(cache, project.id, project.engine_token, 0.2) as ctx:
        assert await ctx.secrets.get("API_KEY") == "v1"
        assert await ctx.secrets.get("API_KEY") == "v1"
        assert len(decryptions.names) == 1
        await asyncio.sleep(0.25)
        assert await ctx.secrets.get("API_KEY") == "v1"
        assert len(decryptions.names) == 2


async def test_the_values_are_forgotten_when_the_execution_ends(
    api: TestClient, project: Project, cache: SnapshotCache
) -> None:
    await put_secret(api, project, "API_KEY", "canary-ctx-end")
    ctx = ExecutionContext(cache, project.id, project.engine_token, 30.0)
    async with ctx:
        await ctx.secrets.get("API_KEY")
        assert "cached=1" in repr(ctx.secrets)
    assert "cached=0" in repr(ctx.secrets)
    assert "canary-ctx-end" not in repr(ctx.secrets) and "canary-ctx-end" not in repr(cache.state(project.id).snapshot)


async def test_a_missing_secret_fails_with_secret_not_found_naming_it(
    api: TestClient, project: Project, cache: SnapshotCache
) -> None:
    async with ExecutionContext(cache, project.id, project.engine_token, 30.0) as ctx:
        with pytest.raises(SecretNotFound) as caught:
            _ = ctx.secrets.NOT_SET
        assert caught.value.code == "secret_not_found" and "NOT_SET" in str(caught.value)


async def test_an_overwrite_reaches_an_open_execution_at_its_next_reference(
    api: TestClient, project: Project, worker: Worker, seen: Seen
) -> None:
    await seen.wait_for(project.id, await put_secret(api, project, "API_KEY", "v1"))
    async with worker.execution(project.id, project.engine_token) as ctx:
        assert await ctx.secrets.get("API_KEY") == "v1"
        await seen.wait_for(project.id, await put_secret(api, project, "API_KEY", "v2"))
        assert await ctx.secrets.get("API_KEY") == "v2"
        await seen.wait_for(project.id, await put_secret(api, project, "API_KEY", "v3"))
        assert await ctx.secrets.get("API_KEY") == "v3"


async def test_a_delete_stops_resolving_at_once_in_an_open_execution(
    api: TestClient, project: Project, worker: Worker, seen: Seen
) -> None:
    await seen.wait_for(project.id, await put_secret(api, project, "API_KEY", "v1"))
    async with worker.execution(project.id, project.engine_token) as ctx:
        assert await ctx.secrets.get("API_KEY") == "v1"
        await seen.wait_for(project.id, await delete_secret(api, project, "API_KEY"))
        with pytest.raises(SecretNotFound):
            await ctx.secrets.get("API_KEY")


async def test_a_change_to_another_project_keeps_this_executions_values(
    api: TestClient, create_project: CreateProject, worker: Worker, seen: Seen, decryptions: CountingOpen
) -> None:
    mine, other = await create_project("Mine"), await create_project("Other")
    await seen.wait_for(mine.id, await put_secret(api, mine, "API_KEY", "mine"))
    async with worker.execution(mine.id, mine.engine_token) as ctx:
        assert await ctx.secrets.get("API_KEY") == "mine"
        await seen.wait_for(other.id, await put_secret(api, other, "API_KEY", "other"))
        assert await ctx.secrets.get("API_KEY") == "mine"
        assert ctx.secrets.API_KEY == "mine"
    assert decryptions.names == ["API_KEY"]


async def test_after_a_change_the_synchronous_form_gives_the_new_value(
    api: TestClient, project: Project, worker: Worker, seen: Seen
) -> None:
    """The change's engine delta came with its event, so the snapshot is current at once. (While a
    delta or fetch is still on its way the synchronous form raises: test_engine_deltas.)"""
    await seen.wait_for(project.id, await put_secret(api, project, "API_KEY", "v1"))
    async with worker.execution(project.id, project.engine_token) as ctx:
        assert ctx.secrets.API_KEY == "v1"
        await seen.wait_for(project.id, await put_secret(api, project, "API_KEY", "v2"))
        assert ctx.secrets.API_KEY == "v2"
        assert await ctx.secrets.get("API_KEY") == "v2"


async def test_while_the_stream_is_not_followed_every_reference_is_fresh(
    api: TestClient, project: Project, cache: SnapshotCache
) -> None:
    """No event can arrive, so neither the snapshot nor the execution's values may be reused."""
    await put_secret(api, project, "API_KEY", "v1")
    async with ExecutionContext(cache, project.id, project.engine_token, 30.0) as ctx:
        assert await ctx.secrets.get("API_KEY") == "v1"
        cache.drop_all("test: the listener lost the stream")
        cache.trusted = False
        assert await ctx.secrets.get("API_KEY") == "v1"
        await put_secret(api, project, "API_KEY", "v2")
        assert await ctx.secrets.get("API_KEY") == "v2"
        with pytest.raises(SecretsNotLoaded):  # the synchronous form cannot fetch
            _ = ctx.secrets.API_KEY
