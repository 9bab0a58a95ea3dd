"""Engine deltas: an event whose effect is fully known patches the snapshot of the revision just
before it instead of dropping it (a `secret.put` from the delta the relay left in Redis); anything
missing, mismatched, out of order or overtaken falls back to a fetch, and stale data never comes back."""

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio as redis
from aiohttp.test_utils import TestClient

from contract.engine import EngineDelta, EngineSecret, delta_encoder
from contract.events import (
    CredentialDeleted,
    CredentialPut,
    Event,
    FrontendVarDeleted,
    FrontendVarPut,
    ProjectKeyRotated,
    SecretDeleted,
    SecretPut,
    WorkflowDeleted,
    WorkflowPut,
)
from contract.streams import Streams
from tests.conftest import Project
from tests.worker.conftest import ORIGIN, CountingFetch, Feed, follow_feed, put_secret, run_listener
from worker.context import ExecutionContext
from worker.errors import SecretNotFound, SecretsNotLoaded
from worker.listener import READ_AHEAD, ChangeListener, DeltaReader, delta_client, listener_client
from worker.snapshots import ProjectState, SnapshotCache

pytestmark = pytest.mark.timeout(20)


class HeldDeltas(DeltaReader):
    """The listener's delta reader, recording the GETs it was asked for; `hold()` parks the next ones.
    Unless a test asks for `read_ahead`, every delta is read with a GET after its event."""

    def __init__(self, client: redis.Redis, streams: Streams, read_ahead: int) -> None:
        super().__init__(client, streams, read_ahead=read_ahead)
        self.asked: list[int] = []
        self._gate: asyncio.Event | None = None

    def hold(self) -> asyncio.Event:
        self._gate = asyncio.Event()
        return self._gate

    async def load(self, origin: str, seq: int) -> EngineDelta | None:
        self.asked.append(seq)
        if self._gate is not None:
            await self._gate.wait()
        return await super().load(origin, seq)


@pytest.fixture
def read_ahead() -> int:
    """Deltas read with each XREAD; a test sets it with `@pytest.mark.parametrize("read_ahead", ...)`."""
    return 0


@pytest.fixture
async def deltas(redis_url: str, streams: Streams, read_ahead: int) -> AsyncIterator[HeldDeltas]:
    client = delta_client(redis_url)
    yield HeldDeltas(client, streams, read_ahead)
    await client.aclose()


@pytest.fixture
def protocol() -> int:
    """The RESP version the listener speaks; a test sets it with `@pytest.mark.parametrize`."""
    return 2


@pytest.fixture
async def feed(
    redis_url: str, prefix: str, redis_client: redis.Redis, cache: SnapshotCache, deltas: HeldDeltas, protocol: int
) -> AsyncIterator[Feed]:
    async for feed in follow_feed(f"{redis_url}?protocol={protocol}", prefix, redis_client, cache, deltas):
        yield feed


@dataclass
class Loaded:
    state: ProjectState
    revision: int


@pytest.fixture
async def loaded(api: TestClient, project: Project, cache: SnapshotCache, feed: Feed) -> Loaded:
    """N = "v1" and the project's snapshot cached at that revision (one fetch)."""
    revision = await put_secret(api, project, "N", "v1")
    state = cache.state(project.id)
    await cache.snapshot(state, project.engine_token)
    assert state.snapshot is not None and state.snapshot.revision == revision
    return Loaded(state, revision)


def execution(cache: SnapshotCache, project: Project) -> ExecutionContext:
    return ExecutionContext(cache, project.id, project.engine_token, 30.0)


async def read_secret(api: TestClient, project: Project, name: str) -> EngineSecret:
    """The secret as the engine endpoint shows it (read here, not through the counted fetch)."""
    answer: dict[str, Any] = await (await api.get(f"/api/engine/{project.id}/secrets", headers=project.engine)).json()
    return next(EngineSecret(**s) for s in answer["secrets"] if s["name"] == name)


async def put_and_read(api: TestClient, project: Project, name: str, value: str) -> tuple[int, EngineSecret]:
    """A real PUT; the project's revision after it and the secret as the engine endpoint shows it."""
    revision = await put_secret(api, project, name, value)
    return revision, await read_secret(api, project, name)


def put_event(seq: int, project: Project, revision: int, secret: EngineSecret) -> SecretPut:
    return SecretPut(seq=seq, project=project.id, revision=revision, name=secret.name, version=secret.version)


async def leave_delta(client: redis.Redis, streams: Streams, seq: int, delta: EngineDelta | bytes) -> None:
    """What the relay does before the event's XADD."""
    payload = delta if isinstance(delta, bytes) else delta_encoder.encode(delta)
    await client.set(streams.engine_delta(ORIGIN.decode(), seq), payload, px=60_000)


async def announce_put(
    feed: Feed, streams: Streams, seq: int, project: Project, revision: int, secret: EngineSecret
) -> None:
    await leave_delta(feed.client, streams, seq, EngineDelta(project=project.id, revision=revision, secret=secret))
    await feed.add(seq, put_event(seq, project, revision, secret))


async def landed(state: ProjectState) -> None:
    deadline = time.monotonic() + 5
    while state.inflight is not None:
        assert time.monotonic() < deadline, "the patch never landed"
        await asyncio.sleep(0.002)


@dataclass
class Scene:
    """What a delta test works with: the app and its project, whose N = "v1" is cached at `loaded.revision`
    (one counted fetch), and the hand-written feed whose listener reads deltas through `deltas`."""

    api: TestClient
    project: Project
    cache: SnapshotCache
    engine_fetch: CountingFetch
    feed: Feed
    streams: Streams
    deltas: HeldDeltas
    loaded: Loaded

    def execution(self) -> ExecutionContext:
        return execution(self.cache, self.project)

    async def put_and_read(self, name: str, value: str) -> tuple[int, EngineSecret]:
        return await put_and_read(self.api, self.project, name, value)

    async def announce_put(self, seq: int, revision: int, secret: EngineSecret) -> None:
        await announce_put(self.feed, self.streams, seq, self.project, revision, secret)

    async def put_v2_with_its_delta_held(self) -> asyncio.Event:
        """N = "v2" is put and its event applied while its delta's read is held: set the returned
        event to let the read land."""
        release = self.deltas.hold()
        revision, written = await self.put_and_read("N", "v2")
        await self.announce_put(2, revision, written)
        await self.feed.wait_applied(1)
        return release


@pytest.fixture
def scene(
    api: TestClient,
    project: Project,
    cache: SnapshotCache,
    engine_fetch: CountingFetch,
    feed: Feed,
    streams: Streams,
    deltas: HeldDeltas,
    loaded: Loaded,
) -> Scene:
    """The fixtures above in one. `deltas` comes through here, so a test's `read_ahead` parameter still sets it."""
    return Scene(api, project, cache, engine_fetch, feed, streams, deltas, loaded)


# --- secret.put ------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [2, 3], ids=["RESP2", "RESP3"])
@pytest.mark.parametrize("read_ahead", [0, READ_AHEAD], ids=["read after", "read ahead"])
async def test_a_put_is_patched_from_its_delta_without_a_fetch(read_ahead: int, scene: Scene) -> None:
    cache, state = scene.cache, scene.loaded.state
    async with scene.execution() as ctx:
        assert await ctx.secrets.get("N") == "v1"
        revision, written = await scene.put_and_read("N", "v2")
        await scene.announce_put(2, revision, written)
        await scene.feed.wait_applied(1)
        if read_ahead:  # the delta came with the event: patched as it was applied, nothing in flight
            assert state.inflight is None and state.snapshot is not None
            assert state.snapshot.revision == revision
        assert await ctx.secrets.get("N") == "v2"  # the next reference in a running execution
    assert len(scene.engine_fetch.calls) == 1 and scene.deltas.asked == ([] if read_ahead else [2])
    assert cache.stats["deltas"] == 1 and cache.stats["delta_fallbacks"] == 0
    assert cache.stats["deltas_at_hand"] == (1 if read_ahead else 0)
    assert state.snapshot is not None and state.snapshot.revision == revision


async def test_an_overlap_put_patches_in_the_previous_value_too(scene: Scene) -> None:
    api, project = scene.api, scene.project
    response = await api.put(
        f"/api/projects/{project.id}/secrets/N",
        json={"value": "v2", "previous_valid_for_s": 600},
        headers=project.dashboard,
    )
    assert response.status == 200
    answer = await (await api.get(f"/api/engine/{project.id}/secrets", headers=project.engine)).json()
    await scene.announce_put(2, answer["revision"], EngineSecret(**answer["secrets"][0]))
    await scene.feed.wait_applied(1)
    async with scene.execution() as ctx:
        assert await ctx.secrets.get("N") == "v2"
        assert await ctx.secrets.previous("N") == ["v1"]
    assert len(scene.engine_fetch.calls) == 1


async def test_waiters_share_the_patch_and_no_old_value_is_served_meanwhile(scene: Scene) -> None:
    async with scene.execution() as running:
        assert await running.secrets.get("N") == "v1"
        release = scene.deltas.hold()
        revision, written = await scene.put_and_read("N", "v2")
        await scene.announce_put(2, revision, written)
        await scene.feed.wait_applied(1)
        with pytest.raises(SecretsNotLoaded):
            running.secrets.N  # noqa: B018  the cached "v1" went with the event, at once
        waiters = [asyncio.create_task(scene.execution().secrets.get("N")) for _ in range(10)]
        await asyncio.sleep(0.05)
        assert not any(w.done() for w in waiters)
        release.set()
        assert await asyncio.gather(*waiters) == ["v2"] * 10
    assert len(scene.engine_fetch.calls) == 1 and scene.deltas.asked == [2]


# --- deltas read with their event -----------------------------------------------------------------


@pytest.mark.parametrize("read_ahead", [1])
async def test_deltas_past_the_read_ahead_window_are_read_after_their_event(scene: Scene) -> None:
    project, feed, cache = scene.project, scene.feed, scene.cache
    first, first_written = await scene.put_and_read("N", "v2")
    second, second_written = await scene.put_and_read("M", "m1")
    async with feed.client.pipeline(transaction=True) as both:  # one XREAD reads both events
        for seq, revision, secret in ((2, first, first_written), (3, second, second_written)):
            delta = EngineDelta(project=project.id, revision=revision, secret=secret)
            both.set(scene.streams.engine_delta(ORIGIN.decode(), seq), delta_encoder.encode(delta), px=60_000)
            both.xadd(feed.stream, feed.fields(seq, put_event(seq, project, revision, secret)))
        await both.execute()
    await feed.wait_applied(2)
    await landed(scene.loaded.state)
    async with scene.execution() as ctx:
        assert (await ctx.secrets.get("N"), await ctx.secrets.get("M")) == ("v2", "m1")
    assert scene.deltas.asked == [3] and len(scene.engine_fetch.calls) == 1
    assert cache.stats["deltas_at_hand"] == 1 and cache.stats["deltas"] == 2


@pytest.mark.parametrize("read_ahead", [READ_AHEAD])
async def test_a_delta_missing_from_the_read_ahead_is_fetched_without_a_get(scene: Scene) -> None:
    cache = scene.cache
    revision, written = await scene.put_and_read("N", "v2")
    await scene.feed.add(2, put_event(2, scene.project, revision, written))  # no delta: its value was too big, say
    await scene.feed.wait_applied(1)
    assert scene.loaded.state.snapshot is None
    async with scene.execution() as ctx:
        assert await ctx.secrets.get("N") == "v2"
    assert scene.deltas.asked == [] and len(scene.engine_fetch.calls) == 2
    assert cache.stats["deltas"] == 0 and cache.stats["delta_fallbacks"] == 1


# --- fall back to a fetch --------------------------------------------------------------------------


async def test_a_missing_delta_falls_back_to_one_shared_fetch(scene: Scene) -> None:
    cache = scene.cache
    release = scene.deltas.hold()
    revision, written = await scene.put_and_read("N", "v2")
    await scene.feed.add(2, put_event(2, scene.project, revision, written))  # no delta left: expired, or never set
    await scene.feed.wait_applied(1)
    waiters = [asyncio.create_task(scene.execution().secrets.get("N")) for _ in range(5)]
    await asyncio.sleep(0.02)
    release.set()
    assert await asyncio.gather(*waiters) == ["v2"] * 5
    assert len(scene.engine_fetch.calls) == 2  # each waiter fetched with its own token, through one fetch
    assert cache.stats["delta_fallbacks"] == 1 and cache.stats["deltas"] == 0


MISMATCHES = {
    "another version": lambda p, r, old: EngineDelta(project=p, revision=r, secret=old),
    "another revision": lambda p, r, old: EngineDelta(project=p, revision=r - 1, secret=bump(old)),
    "another project": lambda p, r, old: EngineDelta(project="elsewhere", revision=r, secret=bump(old)),
    "another name": lambda p, r, old: EngineDelta(project=p, revision=r, secret=bump(old, name="M")),
    "no secret": lambda p, r, old: EngineDelta(project=p, revision=r),
    "garbled": lambda p, r, old: b'{"project": 42',
}


def bump(secret: EngineSecret, name: str = "N") -> EngineSecret:
    """The old ciphertext claiming to be the new version: used, it would serve the old value."""
    return EngineSecret(name=name, version=secret.version + 1, ciphertext=secret.ciphertext)


@pytest.mark.parametrize("read_ahead", [0, READ_AHEAD], ids=["read after", "read ahead"])
@pytest.mark.parametrize("mismatch", MISMATCHES)
async def test_a_delta_that_does_not_describe_its_event_is_not_used(mismatch: str, scene: Scene) -> None:
    project, feed, cache = scene.project, scene.feed, scene.cache
    old = await read_secret(scene.api, project, "N")
    revision, written = await scene.put_and_read("N", "v2")
    await leave_delta(feed.client, scene.streams, 2, MISMATCHES[mismatch](project.id, revision, old))
    await feed.add(2, put_event(2, project, revision, written))
    await feed.wait_applied(1)
    async with scene.execution() as ctx:
        assert await ctx.secrets.get("N") == "v2"
    assert len(scene.engine_fetch.calls) == 2
    assert cache.stats["deltas"] == 0 and cache.stats["delta_fallbacks"] == 1


async def test_a_revision_gap_drops_without_reading_a_delta(scene: Scene) -> None:
    await put_secret(scene.api, scene.project, "N", "v2")  # its event never reaches this listener
    revision, written = await scene.put_and_read("N", "v3")
    await scene.announce_put(2, revision, written)
    await scene.feed.wait_applied(1)
    assert scene.loaded.state.snapshot is None and scene.deltas.asked == []
    async with scene.execution() as ctx:
        assert await ctx.secrets.get("N") == "v3"
    assert len(scene.engine_fetch.calls) == 2


# --- a newer change wins -----------------------------------------------------------------------------


async def test_a_delta_overtaken_by_a_newer_event_is_not_kept(scene: Scene) -> None:
    release = await scene.put_v2_with_its_delta_held()
    newer, newest = await scene.put_and_read("N", "v3")
    await scene.announce_put(3, newer, newest)  # arrives while the first delta is out
    await scene.feed.wait_applied(2)
    release.set()
    await landed(scene.loaded.state)
    assert scene.loaded.state.snapshot is None  # v2 is not put back over what the event for v3 announced
    assert scene.deltas.asked == [2]
    async with scene.execution() as ctx:
        assert await ctx.secrets.get("N") == "v3"
    assert len(scene.engine_fetch.calls) == 2


async def test_a_delta_read_across_a_drop_all_is_not_kept(scene: Scene) -> None:
    release = await scene.put_v2_with_its_delta_held()
    scene.cache.drop_all("test: events were missed")
    release.set()
    await landed(scene.loaded.state)
    assert scene.loaded.state.snapshot is None
    async with scene.execution() as ctx:
        assert await ctx.secrets.get("N") == "v2"
    assert len(scene.engine_fetch.calls) == 2


# --- changes patched at once -------------------------------------------------------------------------


async def test_a_delete_is_patched_at_once_and_stops_resolving(scene: Scene) -> None:
    api, project, feed, loaded = scene.api, scene.project, scene.feed, scene.loaded
    await put_secret(api, project, "KEPT", "kept")
    await feed.add(2, SecretPut(seq=2, project=project.id, revision=loaded.revision + 1, name="KEPT", version=1))
    await feed.wait_applied(1)  # no delta reachable here: dropped, fetched below
    async with scene.execution() as running:
        assert await running.secrets.get("N") == "v1"
        response = await api.delete(f"/api/projects/{project.id}/secrets/N", headers=project.dashboard)
        assert response.status == 204
        await feed.add(3, SecretDeleted(seq=3, project=project.id, revision=loaded.revision + 2, name="N", version=1))
        await feed.wait_applied(2)
        with pytest.raises(SecretNotFound):
            running.secrets.N  # noqa: B018  the synchronous form: no fetch, no refresh
        assert running.secrets.KEPT == "kept"
    snapshot = loaded.state.snapshot
    assert snapshot is not None and snapshot.revision == loaded.revision + 2
    assert set(snapshot.ciphertexts) == {"KEPT"}
    assert len(scene.engine_fetch.calls) == 2 and scene.cache.stats["patches"] == 1


ENGINE_BLIND: list[type[Event]] = [FrontendVarPut, FrontendVarDeleted, WorkflowPut, WorkflowDeleted]


@pytest.mark.parametrize("kind", ENGINE_BLIND, ids=lambda kind: kind.__name__)
async def test_a_change_the_engine_does_not_read_moves_only_the_revision(
    kind: type[FrontendVarPut], scene: Scene
) -> None:
    loaded = scene.loaded
    before = loaded.state.snapshot
    assert before is not None
    epoch = loaded.state.epoch
    await scene.feed.add(2, kind(seq=2, project=scene.project.id, revision=loaded.revision + 1, name="X", version=1))
    await scene.feed.wait_applied(1)
    after = loaded.state.snapshot
    assert after is not None and after.revision == loaded.revision + 1 and after.ciphertexts == before.ciphertexts
    assert loaded.state.epoch == epoch + 1 == after.epoch  # values read before still go with the event
    async with scene.execution() as ctx:
        assert await ctx.secrets.get("N") == "v1"
    assert len(scene.engine_fetch.calls) == 1


OTHERS: list[Event] = [
    CredentialPut(seq=2, project="", revision=0, name="C", version=1),
    CredentialDeleted(seq=2, project="", revision=0, name="C", version=1),
    ProjectKeyRotated(seq=2, project="", revision=0),
]


@pytest.mark.parametrize("other", OTHERS, ids=lambda event: type(event).__name__)
async def test_other_changes_still_drop_the_snapshot(
    other: Event, project: Project, feed: Feed, deltas: HeldDeltas, loaded: Loaded
) -> None:
    await feed.add(2, type(other)(**{**_fields(other), "project": project.id, "revision": loaded.revision + 1}))
    await feed.wait_applied(1)
    assert loaded.state.snapshot is None and deltas.asked == []


def _fields(event: Event) -> dict[str, Any]:
    return {name: getattr(event, name) for name in event.__struct_fields__}


# --- the real relay and listener ---------------------------------------------------------------------


@pytest.fixture
async def following(
    redis_url: str, streams: Streams, cache: SnapshotCache, deltas: HeldDeltas, redis_client: redis.Redis
) -> AsyncIterator[Feed]:
    """A listener on the app's own events stream, as a worker runs it."""
    client = listener_client(redis_url, block_ms=200)
    deltas.read_ahead = READ_AHEAD  # as a worker has it
    listener = ChangeListener(client, streams.events, cache, block_ms=200, deltas=deltas)
    async for _ in run_listener(listener):
        yield Feed(redis_client, streams.events, listener)
    await client.aclose()


async def test_a_put_through_the_api_reaches_a_worker_through_its_delta(
    api: TestClient, project: Project, cache: SnapshotCache, engine_fetch: CountingFetch, following: Feed
) -> None:
    await put_secret(api, project, "N", "v1")
    await following.wait_applied(1)
    async with execution(cache, project) as ctx:
        assert await ctx.secrets.get("N") == "v1"
        await put_secret(api, project, "N", "v2")
        await following.wait_applied(2)
        assert await ctx.secrets.get("N") == "v2"
    assert len(engine_fetch.calls) == 1 and cache.stats["deltas"] == cache.stats["deltas_at_hand"] == 1
