"""The Frontend (Build) vars routes: public values, readable, versioned, with the secrets' error shape."""

import asyncio
import time
from datetime import datetime
from typing import Any

import msgspec
import pytest
import redis.asyncio as redis
from aiohttp.test_utils import TestClient

from contract.events import decode_event
from contract.streams import FIELD_EVENT, Streams
from tests.conftest import CreateProject, Project

pytestmark = pytest.mark.timeout(20)


def url(project: Project, name: str | None = None) -> str:
    base = f"/api/projects/{project.id}/frontend-vars"
    return base if name is None else f"{base}/{name}"


async def error_of(response: Any) -> tuple[int, str]:
    body = await response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return response.status, body["error"]["code"]


def rfc3339_utc(text: str) -> datetime:
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def test_put_creates_then_overwrites_and_reads_back(api: TestClient, project: Project) -> None:
    created = await api.put(
        url(project, "API_BASE_URL"), json={"value": "https://api.example"}, headers=project.dashboard
    )
    assert created.status == 201
    body = await created.json()
    assert body["name"] == "API_BASE_URL" and body["value"] == "https://api.example" and body["version"] == 1
    assert created.headers["ETag"] == '"1"'
    assert rfc3339_utc(body["created_at"]) == rfc3339_utc(body["updated_at"])

    overwritten = await api.put(url(project, "API_BASE_URL"), json={"value": "https://v2"}, headers=project.dashboard)
    assert overwritten.status == 200
    again = await overwritten.json()
    assert (again["version"], again["value"], again["created_at"]) == (2, "https://v2", body["created_at"])
    assert rfc3339_utc(again["updated_at"]) >= rfc3339_utc(body["updated_at"])

    got = await api.get(url(project, "API_BASE_URL"), headers=project.dashboard)
    assert got.status == 200 and got.headers["ETag"] == '"2"'
    assert await got.json() == again


async def test_list_returns_names_with_values_sorted(api: TestClient, project: Project) -> None:
    for name, value in [("VITE_FLAG", "on"), ("API_BASE_URL", "https://x"), ("STRIPE_PK", "pk_live_abc")]:
        response = await api.put(url(project, name), json={"value": value}, headers=project.dashboard)
        assert response.status == 201
    listed = await api.get(url(project), headers=project.dashboard)
    assert listed.status == 200
    rows = (await listed.json())["frontend_vars"]
    assert [(r["name"], r["value"], r["version"]) for r in rows] == [
        ("API_BASE_URL", "https://x", 1),
        ("STRIPE_PK", "pk_live_abc", 1),
        ("VITE_FLAG", "on", 1),
    ]
    assert all(set(r) == {"name", "value", "version", "created_at", "updated_at"} for r in rows)


async def test_empty_list(api: TestClient, project: Project) -> None:
    listed = await api.get(url(project), headers=project.dashboard)
    assert (listed.status, await listed.json()) == (200, {"frontend_vars": []})


async def test_delete_then_404(api: TestClient, project: Project) -> None:
    await api.put(url(project, "GONE"), json={"value": "x"}, headers=project.dashboard)
    deleted = await api.delete(url(project, "GONE"), headers=project.dashboard)
    assert deleted.status == 204
    assert await error_of(await api.get(url(project, "GONE"), headers=project.dashboard)) == (
        404,
        "frontend_var_not_found",
    )
    assert await error_of(await api.delete(url(project, "GONE"), headers=project.dashboard)) == (
        404,
        "frontend_var_not_found",
    )


async def test_names_are_case_sensitive_and_separate_from_secrets(api: TestClient, project: Project) -> None:
    await api.put(url(project, "flag"), json={"value": "lower"}, headers=project.dashboard)
    await api.put(url(project, "FLAG"), json={"value": "upper"}, headers=project.dashboard)
    secret = await api.put(f"/api/projects/{project.id}/secrets/FLAG", json={"value": "s3"}, headers=project.dashboard)
    assert secret.status == 201
    assert (await (await api.get(url(project, "flag"), headers=project.dashboard)).json())["value"] == "lower"
    assert (await (await api.get(url(project, "FLAG"), headers=project.dashboard)).json())["value"] == "upper"


@pytest.mark.parametrize("name", ["1ABC", "A-B", "A.B", "A B", "É", "x" * 129])
async def test_invalid_names_are_422(api: TestClient, project: Project, name: str) -> None:
    response = await api.put(url(project, name), json={"value": "v"}, headers=project.dashboard)
    assert await error_of(response) == (422, "invalid_name")


async def test_longest_name_is_accepted(api: TestClient, project: Project) -> None:
    response = await api.put(url(project, "N" * 128), json={"value": "v"}, headers=project.dashboard)
    assert response.status == 201


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"value": ""}, 422, "invalid_value"),
        ({"value": 3}, 422, "invalid_field"),
        ({}, 422, "invalid_field"),
        ({"value": "v", "extra": 1}, 422, "invalid_field"),
        ({"value": "é" * 32_769}, 422, "value_too_large"),
    ],
)
async def test_invalid_bodies_are_422(api: TestClient, project: Project, body: Any, status: int, code: str) -> None:
    response = await api.put(url(project, "X"), json=body, headers=project.dashboard)
    assert await error_of(response) == (status, code)


async def test_largest_value_is_accepted(api: TestClient, project: Project) -> None:
    response = await api.put(url(project, "BIG"), json={"value": "a" * 65_536}, headers=project.dashboard)
    assert response.status == 201


async def test_malformed_not_json_and_oversized_bodies(api: TestClient, project: Project) -> None:
    headers = {**project.dashboard, "Content-Type": "application/json"}
    malformed = await api.put(url(project, "X"), data=b"{nope", headers=headers)
    assert await error_of(malformed) == (400, "malformed_json")
    not_json = await api.put(
        url(project, "X"), data=b"value=1", headers={**project.dashboard, "Content-Type": "text/plain"}
    )
    assert await error_of(not_json) == (415, "unsupported_media_type")
    huge = await api.put(url(project, "X"), data=b'{"value": "' + b"a" * 600_000 + b'"}', headers=headers)
    assert huge.status == 413


async def test_auth_rules(api: TestClient, create_project: CreateProject) -> None:
    mine, theirs = await create_project("Mine"), await create_project("Theirs")
    await api.put(url(theirs, "THEIRS"), json={"value": "t"}, headers=theirs.dashboard)
    assert await error_of(await api.get(url(mine))) == (401, "missing_token")
    assert await error_of(await api.get(url(mine), headers={"Authorization": "Bearer nope"})) == (401, "invalid_token")
    assert await error_of(await api.get(url(mine), headers=mine.engine)) == (403, "wrong_token_scope")
    for response in [
        await api.get(url(theirs), headers=mine.dashboard),
        await api.get(url(theirs, "THEIRS"), headers=mine.dashboard),
        await api.put(url(theirs, "THEIRS"), json={"value": "x"}, headers=mine.dashboard),
        await api.delete(url(theirs, "THEIRS"), headers=mine.dashboard),
        await api.get(f"/api/projects/{theirs.id}/frontend-vars.env", headers=mine.dashboard),
        await api.get("/api/projects/no-such-project/frontend-vars", headers=mine.dashboard),
    ]:
        assert await error_of(response) == (404, "project_not_found")
    still = await api.get(url(theirs, "THEIRS"), headers=theirs.dashboard)
    assert (await still.json())["value"] == "t"


async def test_if_match(api: TestClient, project: Project) -> None:
    missing = await api.put(url(project, "V"), json={"value": "1"}, headers={**project.dashboard, "If-Match": "1"})
    assert await error_of(missing) == (412, "version_mismatch")
    await api.put(url(project, "V"), json={"value": "1"}, headers=project.dashboard)
    ok = await api.put(url(project, "V"), json={"value": "2"}, headers={**project.dashboard, "If-Match": '"1"'})
    assert ok.status == 200
    stale = await api.put(url(project, "V"), json={"value": "3"}, headers={**project.dashboard, "If-Match": "1"})
    assert await error_of(stale) == (412, "version_mismatch")
    stale_delete = await api.delete(url(project, "V"), headers={**project.dashboard, "If-Match": "1"})
    assert await error_of(stale_delete) == (412, "version_mismatch")
    bad = await api.put(url(project, "V"), json={"value": "3"}, headers={**project.dashboard, "If-Match": "latest"})
    assert await error_of(bad) == (400, "invalid_if_match")
    assert (await (await api.get(url(project, "V"), headers=project.dashboard)).json())["value"] == "2"
    deleted = await api.delete(url(project, "V"), headers={**project.dashboard, "If-Match": "2"})
    assert deleted.status == 204


async def _revision(api: TestClient, project: Project) -> int:
    response = await api.get(f"/api/engine/{project.id}/secrets", headers=project.engine)
    assert response.status == 200
    return int((await response.json())["revision"])


async def test_changes_bump_the_project_revision_and_refusals_do_not(api: TestClient, project: Project) -> None:
    start = await _revision(api, project)
    await api.put(url(project, "A"), json={"value": "1"}, headers=project.dashboard)
    await api.put(url(project, "A"), json={"value": "2"}, headers=project.dashboard)
    refused = await api.put(url(project, "B"), json={"value": "sk_live_abc"}, headers=project.dashboard)
    assert refused.status == 422
    await api.delete(url(project, "A"), headers=project.dashboard)
    assert await _revision(api, project) == start + 3


async def test_changes_are_published_on_the_events_stream(
    api: TestClient, project: Project, redis_client: redis.Redis, streams: Streams
) -> None:
    await api.put(url(project, "API_BASE_URL"), json={"value": "https://one"}, headers=project.dashboard)
    await api.put(url(project, "API_BASE_URL"), json={"value": "https://two"}, headers=project.dashboard)
    await api.delete(url(project, "API_BASE_URL"), headers=project.dashboard)
    deadline = time.monotonic() + 5
    while True:
        entries = await redis_client.xrange(streams.events)
        if len(entries) >= 4 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.01)
    events = [msgspec.to_builtins(decode_event(fields[FIELD_EVENT])) for _, fields in entries]
    mine = [(e["type"], e.get("name"), e.get("version"), e["revision"]) for e in events if e["project"] == project.id]
    assert mine == [
        ("project.create", None, None, 0),
        ("frontend_var.put", "API_BASE_URL", 1, 1),
        ("frontend_var.put", "API_BASE_URL", 2, 2),
        ("frontend_var.delete", "API_BASE_URL", 2, 3),
    ]
    assert b"https://one" not in repr(entries).encode()
