"""The secrets routes as a dashboard user sees them."""

import asyncio
from datetime import datetime

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import CreateProject, Project
from tests.support.api import assert_rfc3339_utc, expect_error


async def test_put_creates_then_overwrites_and_never_returns_the_value(api: TestClient, project: Project) -> None:
    url = f"/api/projects/{project.id}/secrets/STRIPE_WEBHOOK_SIGNING_KEY"
    created = await api.put(url, json={"value": "whsec_canary_1"}, headers=project.dashboard)
    overwritten = await api.put(url, json={"value": "whsec_canary_2"}, headers=project.dashboard)
    listed = await api.get(f"/api/projects/{project.id}/secrets", headers=project.dashboard)
    assert (created.status, overwritten.status) == (201, 200)
    assert (await overwritten.json())["version"] == 2
    body = await listed.text()
    assert "STRIPE_WEBHOOK_SIGNING_KEY" in body and "whsec_canary" not in body


META_KEYS = {"name", "version", "created_at", "updated_at", "previous_valid_until", "used_by", "last_used_at"}


async def _engine_revision(api: TestClient, project: Project) -> int:
    response = await api.get(f"/api/engine/{project.id}/secrets", headers=project.engine)
    assert response.status == 200
    return int((await response.json())["revision"])


@pytest.mark.timeout(15)
async def test_put_answers_metadata_only_with_201_then_200(api: TestClient, project: Project) -> None:
    url = f"/api/projects/{project.id}/secrets/API_KEY"
    created = await api.put(url, json={"value": "canary-put-1"}, headers=project.dashboard)
    assert created.status == 201
    body = await created.json()
    assert set(body) == META_KEYS
    assert (body["name"], body["version"]) == ("API_KEY", 1)
    assert "canary-put-1" not in await created.text()
    overwritten = await api.put(url, json={"value": "canary-put-2"}, headers=project.dashboard)
    assert overwritten.status == 200
    assert set(await overwritten.json()) == META_KEYS
    assert "canary-put-2" not in await overwritten.text()


@pytest.mark.timeout(15)
async def test_versions_grow_by_one_and_created_at_stays(api: TestClient, project: Project) -> None:
    url = f"/api/projects/{project.id}/secrets/TOKEN"
    bodies = []
    for i in range(5):
        response = await api.put(url, json={"value": f"value-{i}"}, headers=project.dashboard)
        bodies.append(await response.json())
    assert [b["version"] for b in bodies] == [1, 2, 3, 4, 5]
    assert len({b["created_at"] for b in bodies}) == 1
    updated = [assert_rfc3339_utc(b["updated_at"]) for b in bodies]
    assert updated == sorted(updated)
    assert assert_rfc3339_utc(bodies[0]["created_at"]) <= updated[-1]
    current = await (await api.get(url, headers=project.dashboard)).json()
    assert current == bodies[-1]


@pytest.mark.timeout(15)
async def test_timestamps_are_rfc3339_utc_and_now(api: TestClient, project: Project) -> None:
    before = datetime.now().astimezone()
    response = await api.put(f"/api/projects/{project.id}/secrets/A", json={"value": "v"}, headers=project.dashboard)
    after = datetime.now().astimezone()
    body = await response.json()
    for key in ("created_at", "updated_at"):
        stamp = assert_rfc3339_utc(body[key])
        assert before.replace(microsecond=0) <= stamp.replace(microsecond=0) <= after


@pytest.mark.timeout(15)
async def test_the_project_revision_grows_by_one_on_every_change(api: TestClient, project: Project) -> None:
    base = f"/api/projects/{project.id}/secrets"
    revisions = [await _engine_revision(api, project)]
    changes = [
        ("PUT", "A", {"value": "1"}),
        ("PUT", "B", {"value": "1"}),
        ("PUT", "A", {"value": "2"}),
        ("DELETE", "B", None),
        ("PUT", "B", {"value": "again"}),
    ]
    for method, name, body in changes:
        response = await api.request(method, f"{base}/{name}", json=body, headers=project.dashboard)
        assert response.status in (200, 201, 204)
        revisions.append(await _engine_revision(api, project))
    assert revisions == list(range(revisions[0], revisions[0] + len(changes) + 1))


@pytest.mark.timeout(15)
async def test_a_refused_change_does_not_move_the_revision(api: TestClient, project: Project) -> None:
    base = f"/api/projects/{project.id}/secrets"
    await api.put(f"{base}/A", json={"value": "1"}, headers=project.dashboard)
    revision = await _engine_revision(api, project)
    await expect_error(await api.put(f"{base}/A", json={"value": ""}, headers=project.dashboard), 422)
    await expect_error(
        await api.put(f"{base}/A", json={"value": "x"}, headers={**project.dashboard, "If-Match": "9"}), 412
    )
    await expect_error(await api.delete(f"{base}/NOPE", headers=project.dashboard), 404)
    assert await _engine_revision(api, project) == revision


@pytest.mark.timeout(15)
async def test_another_projects_changes_do_not_move_this_revision(
    api: TestClient, create_project: CreateProject
) -> None:
    mine, theirs = await create_project("Mine"), await create_project("Theirs")
    revision = await _engine_revision(api, mine)
    await api.put(f"/api/projects/{theirs.id}/secrets/A", json={"value": "1"}, headers=theirs.dashboard)
    assert await _engine_revision(api, mine) == revision


@pytest.mark.timeout(15)
async def test_list_and_get_show_metadata_and_never_the_value(api: TestClient, project: Project) -> None:
    base = f"/api/projects/{project.id}/secrets"
    values = {"ZED": "canary-list-zed", "ALPHA": "canary-list-alpha", "mid_name": "canary-list-mid"}
    for name, value in values.items():
        await api.put(f"{base}/{name}", json={"value": value}, headers=project.dashboard)
    listed = await api.get(base, headers=project.dashboard)
    assert listed.status == 200
    body = await listed.json()
    assert set(body) == {"secrets"}
    assert sorted(s["name"] for s in body["secrets"]) == sorted(values)
    for item in body["secrets"]:
        assert set(item) == META_KEYS
    one = await api.get(f"{base}/ALPHA", headers=project.dashboard)
    assert set(await one.json()) == META_KEYS
    for text in (await listed.text(), await one.text()):
        assert not any(value in text for value in values.values())


@pytest.mark.timeout(15)
async def test_an_empty_project_lists_no_secrets(api: TestClient, project: Project) -> None:
    response = await api.get(f"/api/projects/{project.id}/secrets", headers=project.dashboard)
    assert (response.status, await response.json()) == (200, {"secrets": []})


@pytest.mark.timeout(15)
async def test_delete_is_204_with_no_body_then_the_secret_is_gone(api: TestClient, project: Project) -> None:
    url = f"/api/projects/{project.id}/secrets/GONE"
    await api.put(url, json={"value": "v"}, headers=project.dashboard)
    deleted = await api.delete(url, headers=project.dashboard)
    assert deleted.status == 204 and await deleted.read() == b""
    await expect_error(await api.get(url, headers=project.dashboard), 404)
    await expect_error(await api.delete(url, headers=project.dashboard), 404)
    listed = await (await api.get(f"/api/projects/{project.id}/secrets", headers=project.dashboard)).json()
    assert listed == {"secrets": []}


@pytest.mark.timeout(15)
async def test_concurrent_puts_each_get_their_own_version(api: TestClient, project: Project) -> None:
    url = f"/api/projects/{project.id}/secrets/RACE"
    responses = await asyncio.gather(
        *(api.put(url, json={"value": f"v{i}"}, headers=project.dashboard) for i in range(20))
    )
    versions = sorted([(await r.json())["version"] for r in responses])
    assert versions == list(range(1, 21))
    assert sorted(r.status for r in responses) == [200] * 19 + [201]


@pytest.mark.timeout(15)
async def test_projects_are_independent(api: TestClient, create_project: CreateProject) -> None:
    one, two = await create_project("One"), await create_project("Two")
    await api.put(f"/api/projects/{one.id}/secrets/SHARED", json={"value": "a"}, headers=one.dashboard)
    await api.put(f"/api/projects/{one.id}/secrets/SHARED", json={"value": "b"}, headers=one.dashboard)
    response = await api.put(f"/api/projects/{two.id}/secrets/SHARED", json={"value": "c"}, headers=two.dashboard)
    assert response.status == 201 and (await response.json())["version"] == 1
    listed = await (await api.get(f"/api/projects/{two.id}/secrets", headers=two.dashboard)).json()
    assert [(s["name"], s["version"]) for s in listed["secrets"]] == [("SHARED", 1)]
