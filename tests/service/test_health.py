"""/healthz: the process answers. /readyz: SQLite and Redis answer too."""

from collections.abc import Awaitable, Callable
from dataclasses import replace

import pytest
from aiohttp.test_utils import TestClient

from service.app import create_app
from service.settings import Settings
from tests.conftest import admin_headers
from tests.support.processes import free_port

pytestmark = pytest.mark.timeout(20)


async def test_healthz(api: TestClient) -> None:
    response = await api.get("/healthz")
    assert (response.status, await response.json()) == (200, {"status": "ok"})


async def test_readyz_when_sqlite_and_redis_answer(api: TestClient) -> None:
    response = await api.get("/readyz")
    body = await response.json()
    assert response.status == 200
    assert body["status"] == "ready"
    assert body["checks"] == {"sqlite": "ok", "redis": "ok"}


async def test_without_redis_the_service_is_live_not_ready_and_still_takes_writes(
    aiohttp_client: Callable[..., Awaitable[TestClient]], settings: Settings
) -> None:
    no_redis = replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    client = await aiohttp_client(create_app(no_redis))
    assert (await client.get("/healthz")).status == 200
    ready = await client.get("/readyz")
    body = await ready.json()
    assert ready.status == 503
    assert body["status"] == "not_ready" and body["checks"] == {"sqlite": "ok", "redis": "failing"}

    created = await client.post("/api/projects", json={"name": "Shop"}, headers=admin_headers())
    assert created.status == 201
    project = await created.json()
    put = await client.put(
        f"/api/projects/{project['id']}/secrets/K",
        json={"value": "v"},
        headers={"Authorization": f"Bearer {project['dashboard_token']}"},
    )
    assert put.status == 201, await put.text()
