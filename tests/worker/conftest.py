"""Worker-side fixtures: the engine endpoint of the real app (served on a real port), fetched through
the worker's own client, with a counter so tests can see how many fetches reached the API."""

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from contract.engine import EngineSnapshot
from tests.conftest import Project
from worker.engine_client import EngineClient
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
