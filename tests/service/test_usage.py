"""`used_by`: the saved workflows that reference a secret, kept as workflows are saved and deleted."""

import sqlite3
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from service.settings import Settings
from service.state import WRITER
from service.store.usage import backfill_refs
from tests.conftest import Project

pytestmark = pytest.mark.timeout(20)


def workflow(*secrets: str, credential: str | None = None) -> dict[str, Any]:
    config: dict[str, Any] = {
        "url": "https://api.example.com",
        "headers": {f"X-{i}": f"${{ secrets.{s} }}" for i, s in enumerate(secrets)},
    }
    if credential:
        config["credential"] = credential
    return {"trigger": {"type": "webhook"}, "nodes": [{"id": "call", "type": "http_request", "config": config}]}


async def used_by(api: TestClient, project: Project, name: str) -> list[str]:
    response = await api.get(f"/api/projects/{project.id}/secrets/{name}", headers=project.dashboard)
    assert response.status == 200, await response.text()
    meta: dict[str, Any] = await response.json()
    return list(meta["used_by"])


async def save(api: TestClient, project: Project, name: str, definition: dict[str, Any]) -> None:
    response = await api.put(f"/api/projects/{project.id}/workflows/{name}", json=definition, headers=project.dashboard)
    assert response.status in (200, 201), await response.text()


async def test_used_by_follows_saves_and_deletes(api: TestClient, project: Project) -> None:
    for name in ("API_TOKEN", "OTHER"):
        await api.put(f"/api/projects/{project.id}/secrets/{name}", json={"value": "v"}, headers=project.dashboard)
    assert await used_by(api, project, "API_TOKEN") == []
    await save(api, project, "orders", workflow("API_TOKEN"))
    await save(api, project, "billing", workflow("API_TOKEN", "OTHER"))
    assert await used_by(api, project, "API_TOKEN") == ["billing", "orders"]
    assert await used_by(api, project, "OTHER") == ["billing"]

    await save(api, project, "billing", workflow("OTHER"))  # a new version no longer reads API_TOKEN
    assert await used_by(api, project, "API_TOKEN") == ["orders"]
    await api.delete(f"/api/projects/{project.id}/workflows/orders", headers=project.dashboard)
    assert await used_by(api, project, "API_TOKEN") == []
    listed = await (await api.get(f"/api/projects/{project.id}/secrets", headers=project.dashboard)).json()
    assert {s["name"]: s["used_by"] for s in listed["secrets"]} == {"API_TOKEN": [], "OTHER": ["billing"]}


async def test_a_reference_saved_before_the_secret_shows_once_it_exists(api: TestClient, project: Project) -> None:
    await save(api, project, "early", workflow("LATER"))
    response = await api.put(
        f"/api/projects/{project.id}/secrets/LATER", json={"value": "v"}, headers=project.dashboard
    )
    assert (await response.json())["used_by"] == ["early"]  # the PUT's own answer already says so


async def test_credentials_are_indexed_too(api: TestClient, project: Project, settings: Settings) -> None:
    await save(api, project, "charge", workflow(credential="STRIPE"))
    with sqlite3.connect(settings.db_path) as conn:
        rows = conn.execute("SELECT workflow, kind, name FROM workflow_refs WHERE project_id = ?", (project.id,))
        assert rows.fetchall() == [("charge", "credential", "STRIPE")]


async def test_workflows_saved_before_usage_tracking_are_indexed_once(
    api: TestClient, project: Project, settings: Settings
) -> None:
    await api.put(f"/api/projects/{project.id}/secrets/API_TOKEN", json={"value": "v"}, headers=project.dashboard)
    await save(api, project, "old", workflow("API_TOKEN"))
    with sqlite3.connect(settings.db_path) as conn:  # as a database migrated from before: no index, no mark
        conn.execute("DELETE FROM workflow_refs")
        conn.execute("DELETE FROM meta WHERE key = 'workflow_refs_v1'")
    assert await used_by(api, project, "API_TOKEN") == []
    assert await api.app[WRITER].submit(backfill_refs()) == 1
    assert await used_by(api, project, "API_TOKEN") == ["old"]
    assert await api.app[WRITER].submit(backfill_refs()) == 0
