"""The per-project snapshot cache, against the real engine endpoint: single-flight, LRU, no stale data."""

import asyncio

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import CreateProject, Project
from tests.worker.conftest import CountingFetch, put_secret
from worker.context import ExecutionContext
from worker.errors import SecretNotFound, SnapshotUnavailable
from worker.snapshots import SnapshotCache

pytestmark = pytest.mark.timeout(15)


def execution(cache: SnapshotCache, project: Project, ttl_s: float = 30.0) -> ExecutionContext:
    return ExecutionContext(cache, project.id, project.engine_token, ttl_s)


async def test_concurrent_gets_share_one_fetch(
    api: TestClient, project: Project, cache: SnapshotCache, engine_fetch: CountingFetch
) -> None:
    await put_secret(api, project, "API_KEY", "value-1")
    state = cache.state(project.id)
    snapshots = await asyncio.gather(*(cache.snapshot(state, project.engine_token) for _ in range(25)))
    assert len(engine_fetch.calls) == 1
    assert all(s is snapshots[0] for s in snapshots)
    await cache.snapshot(state, project.engine_token)
    assert len(engine_fetch.calls) == 1  # and later gets are hits


async def test_concurrent_executions_share_one_fetch_and_each_sees_the_value(
    api: TestClient, project: Project, cache: SnapshotCache, engine_fetch: CountingFetch
) -> None:
    await put_secret(api, project, "API_KEY", "value-1")

    async def run() -> str:
        async with execution(cache, project) as ctx:
            return await ctx.secrets.get("API_KEY")

    assert await asyncio.gather(*(run() for _ in range(20))) == ["value-1"] * 20
    assert len(engine_fetch.calls) == 1


async def test_a_failed_fetch_fails_every_waiter_and_is_not_remembered(
    api: TestClient, project: Project, cache: SnapshotCache, engine_fetch: CountingFetch
) -> None:
    await put_secret(api, project, "API_KEY", "value-1")
    state = cache.state(project.id)
    results = await asyncio.gather(
        *(cache.snapshot(state, "bse_not-a-real-token") for _ in range(10)), return_exceptions=True
    )
    assert all(isinstance(r, SnapshotUnavailable) for r in results)
    assert len(engine_fetch.calls) == 1
    snapshot = await cache.snapshot(state, project.engine_token)  # the next get tries again
    assert "API_KEY" in snapshot.ciphertexts and len(engine_fetch.calls) == 2


async def test_projects_are_fetched_separately(
    api: TestClient, create_project: CreateProject, cache: SnapshotCache, engine_fetch: CountingFetch
) -> None:
    one, two = await create_project("One"), await create_project("Two")
    await asyncio.gather(*(cache.snapshot(cache.state(p.id), p.engine_token) for p in (one, two, one, two)))
    assert sorted(engine_fetch.calls) == sorted([one.id, two.id])


async def test_the_cache_holds_at_most_max_projects_and_evicts_the_least_recently_used(
    api: TestClient, create_project: CreateProject, engine_fetch: CountingFetch
) -> None:
    cache = SnapshotCache(engine_fetch, max_projects=2, miss_refresh_interval_s=60.0)
    cache.trusted = True
    a, b, c = [await create_project(name) for name in ("A", "B", "C")]

    async def touch(p: Project) -> None:
        await cache.snapshot(cache.state(p.id), p.engine_token)

    await touch(a)
    await touch(b)
    await touch(a)  # a is now the most recently used
    assert engine_fetch.calls == [a.id, b.id]
    await touch(c)  # evicts b, not a
    assert len(cache) == 2
    await touch(a)
    assert engine_fetch.calls == [a.id, b.id, c.id]
    await touch(b)  # evicted: fetched again, which evicts c
    assert engine_fetch.calls == [a.id, b.id, c.id, b.id]
    assert len(cache) == 2
    assert cache.stats["evictions"] == 2


async def test_an_execution_whose_project_was_evicted_still_resolves(
    api: TestClient, create_project: CreateProject, engine_fetch: CountingFetch
) -> None:
    cache = SnapshotCache(engine_fetch, max_projects=1, miss_refresh_interval_s=60.0)
    cache.trusted = True
    one, two = await create_project("One"), await create_project("Two")
    await put_secret(api, one, "K", "one-1")
    await put_secret(api, two, "K", "two-1")
    async with execution(cache, one) as ctx_one:
        assert await ctx_one.secrets.get("K") == "one-1"
        async with execution(cache, two) as ctx_two:  # evicts project one
            assert await ctx_two.secrets.get("K") == "two-1"
        await put_secret(api, one, "K", "one-2")
        assert await ctx_one.secrets.get("K") == "one-2"


async def test_a_fetch_started_before_an_invalidation_does_not_put_stale_data_back(
    api: TestClient, project: Project, cache: SnapshotCache, engine_fetch: CountingFetch
) -> None:
    await put_secret(api, project, "API_KEY", "old")
    state = cache.state(project.id)
    release = engine_fetch.hold_next()
    fetch = asyncio.create_task(cache.snapshot(state, project.engine_token))
    await asyncio.wait_for(engine_fetch.parked.wait(), 5)  # it holds the "old" answer now
    revision = await put_secret(api, project, "API_KEY", "new")
    cache.invalidate(project.id, revision)  # the change event arrives while the fetch is out
    release.set()
    snapshot = await asyncio.wait_for(fetch, 5)
    assert snapshot.revision == revision
    assert len(engine_fetch.calls) == 2  # the stale answer was thrown away and fetched again
    async with execution(cache, project) as ctx:
        assert await ctx.secrets.get("API_KEY") == "new"
    assert len(engine_fetch.calls) == 2


async def test_a_fetch_started_before_a_drop_all_is_not_kept(
    api: TestClient, project: Project, cache: SnapshotCache, engine_fetch: CountingFetch
) -> None:
    await put_secret(api, project, "API_KEY", "old")
    state = cache.state(project.id)
    release = engine_fetch.hold_next()
    fetch = asyncio.create_task(cache.snapshot(state, project.engine_token))
    await asyncio.wait_for(engine_fetch.parked.wait(), 5)
    await put_secret(api, project, "API_KEY", "new")
    cache.drop_all("test: the listener reconnected")  # no revision known: nothing before it is trusted
    release.set()
    await asyncio.wait_for(fetch, 5)
    assert len(engine_fetch.calls) == 2
    async with execution(cache, project) as ctx:
        assert await ctx.secrets.get("API_KEY") == "new"


async def test_an_event_the_snapshot_already_reflects_keeps_it(
    api: TestClient, project: Project, cache: SnapshotCache, engine_fetch: CountingFetch
) -> None:
    revision = await put_secret(api, project, "API_KEY", "v")
    state = cache.state(project.id)
    await cache.snapshot(state, project.engine_token)
    cache.invalidate(project.id, revision)  # the event of the write this snapshot already has
    await cache.snapshot(state, project.engine_token)
    assert len(engine_fetch.calls) == 1
    cache.invalidate(project.id, revision + 1)
    with pytest.raises(SnapshotUnavailable):  # the API has not got there yet: never serve the old one
        await cache.snapshot(state, project.engine_token)


async def test_while_untrusted_every_get_fetches_and_nothing_is_kept(
    api: TestClient, project: Project, cache: SnapshotCache, engine_fetch: CountingFetch
) -> None:
    cache.trusted = False  # the listener is not following the stream
    await put_secret(api, project, "API_KEY", "v1")
    state = cache.state(project.id)
    await cache.snapshot(state, project.engine_token)
    await cache.snapshot(state, project.engine_token)
    assert len(engine_fetch.calls) == 2
    assert state.snapshot is None


async def test_a_missing_name_refreshes_once_then_fails_with_secret_not_found(
    api: TestClient, project: Project, cache: SnapshotCache, engine_fetch: CountingFetch
) -> None:
    await put_secret(api, project, "PRESENT", "v")
    async with execution(cache, project) as ctx:
        assert len(engine_fetch.calls) == 1
        with pytest.raises(SecretNotFound) as caught:
            await ctx.secrets.get("ABSENT")
        assert caught.value.code == "secret_not_found" and "ABSENT" in caught.value.message
        assert len(engine_fetch.calls) == 2  # one refresh before failing
        for name in ("ABSENT", "ALSO_ABSENT", "ABSENT"):
            with pytest.raises(SecretNotFound):
                await ctx.secrets.get(name)
        assert len(engine_fetch.calls) == 2  # rate-limited per project
    async with execution(cache, project) as other:
        with pytest.raises(SecretNotFound):
            await other.secrets.get("ABSENT")
    assert len(engine_fetch.calls) == 2


async def test_the_miss_refresh_limit_is_per_project_and_per_interval(
    api: TestClient, create_project: CreateProject, engine_fetch: CountingFetch
) -> None:
    cache = SnapshotCache(engine_fetch, max_projects=10, miss_refresh_interval_s=0.3)
    cache.trusted = True
    one, two = await create_project("One"), await create_project("Two")
    for project in (one, two):
        async with execution(cache, project) as ctx:
            with pytest.raises(SecretNotFound):
                await ctx.secrets.get("ABSENT")
    assert engine_fetch.calls == [one.id, one.id, two.id, two.id]
    await asyncio.sleep(0.35)
    async with execution(cache, one) as ctx:
        with pytest.raises(SecretNotFound):
            await ctx.secrets.get("ABSENT")
    assert engine_fetch.calls[4:] == [one.id]


async def test_a_secret_saved_a_moment_ago_resolves_before_its_event_arrives(
    api: TestClient, project: Project, cache: SnapshotCache, engine_fetch: CountingFetch
) -> None:
    async with execution(cache, project) as ctx:  # the snapshot is loaded, and no event will come
        await put_secret(api, project, "JUST_SAVED", "fresh")
        assert await ctx.secrets.get("JUST_SAVED") == "fresh"
    assert len(engine_fetch.calls) == 2


async def test_a_burst_of_changes_never_starves_a_fetch() -> None:
    """Every fetch is overtaken by a newer change event while it is out: the caller still gets a
    snapshot as new as what it asked for, and nothing overtaken is kept for others."""
    from cryptography.fernet import Fernet

    from contract.engine import EngineSnapshot

    revision = 0
    key = Fernet.generate_key().decode()
    burst_cache: SnapshotCache

    async def fetch(project: str, token: str) -> EngineSnapshot:
        nonlocal revision
        revision += 1
        answer = EngineSnapshot(project=project, revision=revision, data_key=key)
        burst_cache.invalidate(project, revision + 1)  # the next change lands while this answer travels
        return answer

    burst_cache = SnapshotCache(fetch, max_projects=10, miss_refresh_interval_s=0)
    burst_cache.trusted = True
    state = burst_cache.state("busy")
    for _ in range(20):
        asked = state.min_revision
        snapshot = await burst_cache.snapshot(state, "token")
        assert snapshot.revision >= asked
        assert state.snapshot is None  # overtaken: not kept


async def test_a_retry_fetches_instead_of_waiting_on_a_patch_that_is_a_revision_behind(
    api: TestClient, project: Project, cache: SnapshotCache, engine_fetch: CountingFetch
) -> None:
    """Under a burst of changes each patch in flight is one revision behind the next event: a
    waiter that was not satisfied fetches the newest instead of riding patch after patch."""
    revision = await put_secret(api, project, "API_KEY", "value-1")
    state = cache.state(project.id)
    behind = await cache.snapshot(state, project.engine_token)
    gate = asyncio.Event()

    async def patch_one_behind() -> tuple[object, int] | None:
        await gate.wait()
        return behind, state.epoch  # always the revision before the newest announced

    def next_event() -> None:  # the listener, in a burst: an event, and a patch for it in flight
        state.invalidate(revision + 1)
        cache._start_flight(state, patch_one_behind())  # type: ignore[arg-type]

    next_event()
    waiter = asyncio.create_task(cache.snapshot(state, project.engine_token))
    await asyncio.sleep(0.01)
    await put_secret(api, project, "API_KEY", "value-2")  # the revision the announced event said
    gate.set()
    await asyncio.sleep(0)
    next_event()  # another patch already in flight when the waiter retries
    snapshot = await asyncio.wait_for(waiter, 5)
    assert snapshot.revision >= revision + 1 and len(engine_fetch.calls) == 2
