"""The change listener: invalidates what an event names, and drops everything when it cannot be sure
it saw every event (a sequence gap, another database's events, a lost connection)."""

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import redis.asyncio as redis
from aiohttp.test_utils import TestClient

from contract.events import ProjectDeleted, SecretPut
from tests.conftest import CreateProject, Project
from tests.support.processes import RedisServer
from tests.worker.conftest import CountingFetch, Feed, follow_feed, put_secret, run_listener
from worker.listener import ChangeListener, listener_client
from worker.snapshots import SnapshotCache

pytestmark = pytest.mark.timeout(20)


def put(project: str, seq: int = 0, revision: int = 0) -> SecretPut:
    return SecretPut(seq=seq, project=project, revision=revision, name="N", version=1)


@pytest.fixture
async def feed(redis_url: str, prefix: str, redis_client: redis.Redis, cache: SnapshotCache) -> AsyncIterator[Feed]:
    async for feed in follow_feed(redis_url, prefix, redis_client, cache):
        yield feed


@pytest.fixture
async def loaded(api: TestClient, project: Project, cache: SnapshotCache, feed: Feed) -> Callable[[], bool]:
    """The project's snapshot is cached; returns a probe telling whether it still is."""
    await put_secret(api, project, "N", "v")
    state = cache.state(project.id)
    await cache.snapshot(state, project.engine_token)
    return lambda: state.snapshot is not None


async def test_the_listener_starts_after_the_newest_entry_and_trusts_the_cache(
    cache: SnapshotCache, feed: Feed
) -> None:
    assert cache.trusted
    await feed.add(2, put("x", 2))
    await feed.wait_applied(1)
    assert [e.seq for e in feed.applied] == [2]  # seq 1 was there before it started


async def test_an_event_drops_only_its_project_and_only_if_newer(
    api: TestClient,
    project: Project,
    cache: SnapshotCache,
    feed: Feed,
    loaded: Callable[[], bool],
    engine_fetch: CountingFetch,
) -> None:
    revision = cache.state(project.id).snapshot.revision  # type: ignore[union-attr]
    await feed.add(2, put("another-project", 2, revision=99))
    await feed.add(3, put(project.id, 3, revision=revision))  # already reflected
    await feed.wait_applied(2)
    assert loaded()
    await feed.add(4, put(project.id, 4, revision=revision + 1))
    await feed.wait_applied(3)
    assert not loaded()
    assert cache.stats["invalidations"] == 1


async def test_a_sequence_gap_drops_everything(
    project: Project, cache: SnapshotCache, feed: Feed, loaded: Callable[[], bool]
) -> None:
    drops = cache.stats["drops"]
    await feed.add(2, put("x", 2))
    await feed.wait_applied(1)
    assert loaded() and cache.stats["drops"] == drops
    await feed.add(4, put("x", 4))  # seq 3 never came
    await feed.wait_applied(2)
    assert not loaded() and cache.stats["drops"] == drops + 1


async def test_events_of_another_database_drop_everything(
    project: Project, cache: SnapshotCache, feed: Feed, loaded: Callable[[], bool]
) -> None:
    await feed.add(2, put("x", 2), origin=b"db-two")
    await feed.wait_applied(1)
    assert not loaded()


async def test_a_duplicate_is_ignored(
    project: Project, cache: SnapshotCache, feed: Feed, loaded: Callable[[], bool]
) -> None:
    drops = cache.stats["drops"]
    await feed.add(2, put("x", 2))
    await feed.add(2, put(project.id, 2, revision=10**6))  # republished after a relay retry
    await feed.add(1, put(project.id, 1, revision=10**6))
    await feed.add(3, put("x", 3))
    await feed.wait_applied(2)
    assert [e.seq for e in feed.applied] == [2, 3]
    assert loaded() and cache.stats["drops"] == drops


async def test_an_unknown_event_type_still_invalidates_its_project(
    project: Project, cache: SnapshotCache, feed: Feed, loaded: Callable[[], bool]
) -> None:
    payload = b'{"type":"secret.rename","seq":2,"project":"%s","revision":1000}' % project.id.encode()
    await feed.add(2, payload)
    await feed.wait_applied(1)
    assert not loaded()


async def test_a_deleted_project_is_forgotten(
    project: Project, cache: SnapshotCache, feed: Feed, loaded: Callable[[], bool]
) -> None:
    assert project.id in {s.project for s in cache._states.values()}
    await feed.add(2, ProjectDeleted(seq=2, project=project.id, revision=0))
    await feed.wait_applied(1)
    assert not loaded()
    assert len(cache) == 0


async def test_losing_redis_drops_everything_and_distrusts_the_cache_until_it_is_back(
    api: TestClient,
    create_project: CreateProject,
    cache: SnapshotCache,
    engine_fetch: CountingFetch,
    tmp_path: Path,
) -> None:
    project = await create_project()
    await put_secret(api, project, "N", "v")
    server = RedisServer(tmp_path / "redis")
    server.start()
    client = listener_client(server.url, block_ms=200)
    listener = ChangeListener(client, "events", cache, block_ms=200)
    try:
        async for _ in run_listener(listener):
            state = cache.state(project.id)
            await cache.snapshot(state, project.engine_token)
            assert state.snapshot is not None
            server.stop()
            deadline = time.monotonic() + 5
            while listener.connected.is_set():
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            assert state.snapshot is None and not cache.trusted
            await cache.snapshot(state, project.engine_token)
            assert state.snapshot is None  # nothing is kept while the stream is not followed
            server.start()
            await asyncio.wait_for(listener.connected.wait(), 5)
            assert cache.trusted
            await cache.snapshot(state, project.engine_token)
            assert state.snapshot is not None
    finally:
        await client.aclose()
        server.stop()


@pytest.mark.parametrize("protocol", [2, 3])
async def test_events_are_read_in_order_over_either_protocol(
    protocol: int, redis_url: str, prefix: str, redis_client: redis.Redis, cache: SnapshotCache
) -> None:
    """The listener reads replies as Redis sends them (RESP2 lists or RESP3 maps)."""
    async for feed in follow_feed(f"{redis_url}?protocol={protocol}", prefix, redis_client, cache):
        for seq in (2, 3, 4):
            await feed.add(seq, put(f"p{seq}", seq, revision=seq))
        await feed.wait_applied(3)
        assert [(e.seq, e.project) for e in feed.applied] == [(2, "p2"), (3, "p3"), (4, "p4")]
