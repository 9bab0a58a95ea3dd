"""POST /api/projects: the admin creates a project and sees its two tokens once."""

import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import replace

import pytest
from aiohttp.test_utils import TestClient

from contract.names import is_valid_project_id
from service.app import create_app
from service.settings import Settings
from tests.conftest import admin_headers, bearer
from tests.support.api import assert_rfc3339_utc, expect_error

pytestmark = pytest.mark.timeout(15)


async def test_creating_a_project_answers_its_id_name_time_and_two_tokens(api: TestClient) -> None:
    response = await api.post("/api/projects", json={"name": "Shop", "id": "shop"}, headers=admin_headers())
    assert response.status == 201, await response.text()
    body = await response.json()
    assert set(body) == {"id", "name", "created_at", "dashboard_token", "engine_token"}
    assert (body["id"], body["name"]) == ("shop", "Shop")
    assert_rfc3339_utc(body["created_at"])
    assert body["dashboard_token"] != body["engine_token"]
    assert min(len(body["dashboard_token"]), len(body["engine_token"])) >= 32
    assert "no-store" in response.headers.get("Cache-Control", "")


@pytest.mark.parametrize("name", ["Shop", "My Shop!", "ÜBER shop", "---", "x" * 200])
async def test_a_project_without_an_id_gets_a_valid_one(api: TestClient, name: str) -> None:
    response = await api.post("/api/projects", json={"name": name}, headers=admin_headers())
    assert response.status == 201, await response.text()
    body = await response.json()
    assert is_valid_project_id(body["id"]) and body["name"] == name


async def test_two_projects_with_the_same_name_get_different_ids(api: TestClient) -> None:
    first = await (await api.post("/api/projects", json={"name": "Shop"}, headers=admin_headers())).json()
    second = await (await api.post("/api/projects", json={"name": "Shop"}, headers=admin_headers())).json()
    assert first["id"] != second["id"]


async def test_each_token_works_for_its_own_scope(api: TestClient) -> None:
    body = await (await api.post("/api/projects", json={"name": "Shop"}, headers=admin_headers())).json()
    project_id, dashboard, engine = body["id"], bearer(body["dashboard_token"]), bearer(body["engine_token"])
    assert (await api.get(f"/api/projects/{project_id}/secrets", headers=dashboard)).status == 200
    assert (await api.get(f"/api/engine/{project_id}/secrets", headers=engine)).status == 200


async def test_a_wrong_admin_token_is_401_and_creates_nothing(api: TestClient) -> None:
    response = await api.post("/api/projects", json={"name": "Shop", "id": "shop"}, headers=bearer("not-the-admin"))
    await expect_error(response, 401)
    again = await api.post("/api/projects", json={"name": "Shop", "id": "shop"}, headers=admin_headers())
    assert again.status == 201


async def test_tokens_are_stored_hashed(api: TestClient, settings: Settings) -> None:
    body = await (await api.post("/api/projects", json={"name": "Shop"}, headers=admin_headers())).json()
    with sqlite3.connect(settings.db_path) as conn:
        dump = "\n".join(conn.iterdump())
    stored = b"".join(path.read_bytes() for path in settings.db_path.parent.glob(settings.db_path.name + "*"))
    for token in (body["dashboard_token"], body["engine_token"]):
        assert token not in dump
        assert token.encode() not in stored


async def test_a_service_without_an_admin_token_creates_no_projects(
    aiohttp_client: Callable[..., Awaitable[TestClient]], settings: Settings
) -> None:
    client = await aiohttp_client(create_app(replace(settings, admin_token=None)))
    response = await client.post("/api/projects", json={"name": "Shop"}, headers=admin_headers())
    await expect_error(response, 401)
