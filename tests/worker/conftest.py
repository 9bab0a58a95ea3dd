"""Worker-side fixtures: the engine endpoint of the real app (served on a real port), fetched through
the worker's own client, with a counter so tests can see how many fetches reached the API; and a
hand-written events stream with a listener following it."""

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
import redis.asyncio as redis
from aiohttp.test_utils import TestClient
from redis.typing import EncodableT, FieldT

from contract.engine import EngineSnapshot
from contract.events import ChangeEvent, Event, SecretPut, UnknownEvent, encode_event
from contract.streams import FIELD_EVENT, FIELD_ORIGIN, FIELD_SEQ
from contract.tasks import cancel_and_wait
from tests.conftest import Project
from worker.engine_client import EngineClient
from worker.listener import ChangeListener, DeltaReader, listener_client
from worker.snapshots import SnapshotCache


class CountingFetch:
    """The worker's real fetch, counted. `hold_next` parks the next fetch after it got its answer."""

    def __init__(self, client: EngineClient) -> None:
        self._client = client
        self.calls: list[str] = []
        self._hold: asyncio.Event | None = None
        self.parked = asyncio.Event()

    def hold_next(self) -> asyncio.Event:
        self._hold = asyncio.Event()
        return self._hold

    async def __call__(self, project: str, token: str) -> EngineSnapshot:
        self.calls.append(project)
        snapshot = await self._client.fetch(project, token)
        hold, self._hold = self._hold, None
        if hold is not None:
            self.parked.set()
            await hold.wait()
        return snapshot


def api_url(api: TestClient) -> str:
    return str(api.make_url("")).rstrip("/")


@pytest.fixture
async def engine_fetch(api: TestClient) -> AsyncIterator[CountingFetch]:
    async with aiohttp.ClientSession() as session:
        yield CountingFetch(EngineClient(session, api_url(api), timeout_s=5.0))


@pytest.fixture
def cache(engine_fetch: CountingFetch) -> SnapshotCache:
    """A snapshot cache that trusts itself, as it does while its listener follows the stream."""
    cache = SnapshotCache(engine_fetch, max_projects=100, miss_refresh_interval_s=60.0)
    cache.trusted = True
    return cache


async def put_secret(api: TestClient, project: Project, name: str, value: str) -> int:
    """PUT a secret as the dashboard does; returns the project's revision after it."""
    response = await api.put(
        f"/api/projects/{project.id}/secrets/{name}", json={"value": value}, headers=project.dashboard
    )
    assert response.status in (200, 201), await response.text()
    engine = await api.get(f"/api/engine/{project.id}/secrets", headers=project.engine)
    return int((await engine.json())["revision"])


async def delete_secret(api: TestClient, project: Project, name: str) -> int:
    """DELETE a secret; returns the project's revision after it."""
    response = await api.delete(f"/api/projects/{project.id}/secrets/{name}", headers=project.dashboard)
    assert response.status == 204, await response.text()
    engine = await api.get(f"/api/engine/{project.id}/secrets", headers=project.engine)
    return int((await engine.json())["revision"])


ORIGIN = b"db-one"


class Feed:
    """A stream this test writes by hand, and the listener that follows it."""

    def __init__(self, client: redis.Redis, stream: str, listener: ChangeListener) -> None:
        self.client, self.stream, self.listener = client, stream, listener
        self.applied: list[ChangeEvent | UnknownEvent] = []
        listener.on_event = self.applied.append

    async def add(self, seq: int, event: Event | bytes, origin: bytes = ORIGIN) -> None:
        await self.client.xadd(self.stream, self.fields(seq, event, origin))

    @staticmethod
    def fields(seq: int, event: Event | bytes, origin: bytes = ORIGIN) -> dict[FieldT, EncodableT]:
        """A stream entry as the relay writes it."""
        payload = event if isinstance(event, bytes) else encode_event(event)
        return {FIELD_SEQ: str(seq), FIELD_ORIGIN: origin, FIELD_EVENT: payload}

    async def wait_applied(self, count: int, timeout_s: float = 5.0) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.applied) < count:
            assert time.monotonic() < deadline, f"{len(self.applied)} events applied, expected {count}"
            await asyncio.sleep(0.002)


async def run_listener(listener: ChangeListener) -> AsyncIterator[None]:
    task = asyncio.create_task(listener.run())
    try:
        await asyncio.wait_for(listener.connected.wait(), 5)
        yield
    finally:
        await cancel_and_wait(task)


async def follow_feed(
    redis_url: str, prefix: str, client: redis.Redis, cache: SnapshotCache, deltas: DeltaReader | None = None
) -> AsyncIterator[Feed]:
    """A listener on a hand-written stream whose seq 1 (origin ORIGIN) is already there."""
    stream = f"{prefix}:listener-feed"
    first = SecretPut(seq=1, project="x", revision=1, name="N", version=1)
    await client.xadd(stream, {FIELD_SEQ: "1", FIELD_ORIGIN: ORIGIN, FIELD_EVENT: encode_event(first)})
    listen = listener_client(redis_url, block_ms=200)
    listener = ChangeListener(listen, stream, cache, block_ms=200, deltas=deltas)
    async for _ in run_listener(listener):
        yield Feed(client, stream, listener)
    await listen.aclose()
