"""The audit log: every change (who, what, version), every engine read, every refused request on a
project's routes; paged and filtered; append-only; never a value."""

import secrets as random
import sqlite3
import time
from typing import Any

import msgspec
import pytest
import redis.asyncio as redis
from aiohttp.test_utils import TestClient

from contract.executions import ExecutionResult, NodeRecord, SecretRead
from contract.streams import Streams
from service.refusals import RefusalLimiter
from service.settings import Settings
from service.store import secrets as secrets_store
from tests.conftest import CreateProject, Project, admin_headers, bearer
from tests.service.fake_worker import FakeWorker
from tests.service.test_hooks_api import WORKFLOW
from tests.support.api import assert_rfc3339_utc, expect_error

pytestmark = pytest.mark.timeout(30)


def canary() -> str:
    return f"canary-{random.token_hex(12)}"


def token_id(settings: Settings, project: Project, scope: str) -> str:
    with sqlite3.connect(settings.db_path) as conn:
        row = conn.execute(
            "SELECT token_id FROM tokens WHERE project_id = ? AND scope = ?", (project.id, scope)
        ).fetchone()
    return str(row[0])


async def audit(api: TestClient, project: Project, headers: dict[str, str] | None = None, **query: Any) -> Any:
    response = await api.get(
        f"/api/projects/{project.id}/audit",
        params={k: str(v) for k, v in query.items()},
        headers=headers or project.dashboard,
    )
    assert response.status == 200, await response.text()
    return await response.json()


def summary(entries: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Oldest first: (action, actor kind, store, op, name, version)."""
    return [
        (e["action"], e["actor"]["kind"], e.get("store"), e.get("op"), e.get("name"), e.get("version"))
        for e in reversed(entries)
    ]


async def test_every_change_is_logged_with_its_actor(api: TestClient, project: Project, settings: Settings) -> None:
    base = f"/api/projects/{project.id}"
    values = [canary() for _ in range(3)]
    dashboard = project.dashboard
    await api.put(f"{base}/secrets/API_KEY", json={"value": values[0]}, headers=dashboard)
    await api.put(f"{base}/secrets/API_KEY", json={"value": values[1]}, headers=dashboard)
    await api.put(f"{base}/frontend-vars/PUBLIC_URL", json={"value": "https://shop.example"}, headers=dashboard)
    stripe = {"type": "stripe", "fields": {"secret_key": "sk_test_" + random.token_hex(12)}}
    await api.put(f"{base}/credentials/STRIPE", json=stripe, headers=dashboard)
    await api.put(f"{base}/workflows/hook", json=WORKFLOW, headers=dashboard)
    await api.delete(f"{base}/workflows/hook", headers=dashboard)
    await api.delete(f"{base}/credentials/STRIPE", headers=dashboard)
    await api.post(f"{base}/rotate-key", headers=admin_headers())
    await api.delete(f"{base}/secrets/API_KEY", headers=dashboard)

    page = await audit(api, project)
    assert summary(page["entries"]) == [
        ("change", "admin", "project", "create", None, None),
        ("change", "dashboard", "secret", "put", "API_KEY", 1),
        ("change", "dashboard", "secret", "put", "API_KEY", 2),
        ("change", "dashboard", "frontend_var", "put", "PUBLIC_URL", 1),
        ("change", "dashboard", "credential", "put", "STRIPE", 1),
        ("change", "dashboard", "workflow", "put", "hook", 1),
        ("change", "dashboard", "workflow", "delete", "hook", 1),
        ("change", "dashboard", "credential", "delete", "STRIPE", 1),
        ("change", "admin", "project", "key_rotate", None, None),
        ("change", "dashboard", "secret", "delete", "API_KEY", 2),
    ]
    dashboard_id = token_id(settings, project, "dashboard")
    assert {e["actor"].get("id") for e in page["entries"] if e["actor"]["kind"] == "dashboard"} == {dashboard_id}
    assert {e["actor"].get("id") for e in page["entries"] if e["actor"]["kind"] == "admin"} == {"admin"}
    seqs = [e["seq"] for e in page["entries"]]
    assert seqs == sorted(seqs, reverse=True) and page["next_before"] is None
    for entry in page["entries"]:
        assert_rfc3339_utc(entry["at"])
    text = str(page)
    assert not any(value in text for value in values) and stripe["fields"]["secret_key"] not in text


async def test_engine_reads_are_logged_and_stamp_last_used_at(
    api: TestClient, project: Project, redis_client: redis.Redis, streams: Streams
) -> None:
    base = f"/api/projects/{project.id}"
    await api.put(f"{base}/secrets/STRIPE_KEY", json={"value": canary()}, headers=project.dashboard)
    await api.put(f"{base}/workflows/stripe", json=WORKFLOW, headers=project.dashboard)
    worker = FakeWorker(api, redis_client, streams.executions)
    reads = [
        SecretRead(node_id="verify", name="STRIPE_KEY"),
        SecretRead(node_id="verify", name="STRIPE_KEY"),  # reported twice: logged once
        SecretRead(node_id="call", name="OPENAI", kind="credential"),
    ]

    def respond(request: Any) -> ExecutionResult:
        node = NodeRecord(id="verify", type="verify_webhook", status="succeeded")
        return ExecutionResult(status="succeeded", nodes=[node], worker="fake", reads=reads)

    async with worker.serving(respond):
        response = await api.post(f"{base}/workflows/stripe/executions", json={}, headers=project.dashboard)
        record = await response.json()
    assert response.status == 201, record

    page = await audit(api, project, actor="engine")
    read = [(e["store"], e["name"], e["node_id"], e["execution_id"], e["actor"]) for e in reversed(page["entries"])]
    assert read == [
        ("secret", "STRIPE_KEY", "verify", record["id"], {"kind": "engine", "id": "fake"}),
        ("credential", "OPENAI", "call", record["id"], {"kind": "engine", "id": "fake"}),
    ]
    assert all(e["action"] == "read" for e in page["entries"])
    meta = await (await api.get(f"{base}/secrets/STRIPE_KEY", headers=project.dashboard)).json()
    used = assert_rfc3339_utc(meta["last_used_at"])
    assert abs(used.timestamp() - time.time()) < 10


@pytest.mark.parametrize(("resolution_s", "moves"), [(60.0, False), (0.0, True)])
async def test_last_used_at_is_rewritten_at_most_once_per_resolution(
    resolution_s: float,
    moves: bool,
    api: TestClient,
    project: Project,
    redis_client: redis.Redis,
    streams: Streams,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every read is audited; the secret's row is stamped again only once its stamp is older."""
    monkeypatch.setattr(secrets_store, "LAST_USED_RESOLUTION_S", resolution_s)
    base = f"/api/projects/{project.id}"
    await api.put(f"{base}/secrets/STRIPE_KEY", json={"value": canary()}, headers=project.dashboard)
    await api.put(f"{base}/workflows/stripe", json=WORKFLOW, headers=project.dashboard)
    reads = [SecretRead(node_id="verify", name="STRIPE_KEY")]
    stamps = []
    async with FakeWorker(api, redis_client, streams.executions).serving(
        lambda _: ExecutionResult(status="succeeded", worker="fake", reads=reads)
    ):
        for _ in range(2):
            response = await api.post(f"{base}/workflows/stripe/executions", json={}, headers=project.dashboard)
            assert response.status == 201, await response.text()
            meta = await (await api.get(f"{base}/secrets/STRIPE_KEY", headers=project.dashboard)).json()
            stamps.append(meta["last_used_at"])
    assert (stamps[1] != stamps[0]) is moves
    assert len((await audit(api, project, actor="engine"))["entries"]) == 2


async def test_refused_requests_are_logged_with_what_is_known(
    api: TestClient, create_project: CreateProject, settings: Settings
) -> None:
    project, other = await create_project("Mine"), await create_project("Other")
    url = f"/api/projects/{project.id}/secrets/API_KEY"
    value = canary()
    await api.put(url, json={"value": "v1"}, headers=project.dashboard)
    refused = [
        (await api.get(url), 401),
        (await api.get(url, headers=bearer("bsd_not-a-real-token")), 401),
        (await api.put(url, json={"value": value}, headers=project.engine), 403),
        (await api.delete(url, headers=other.dashboard), 404),
        (await api.put(url, json={"value": value}, headers={**project.dashboard, "If-Match": "7"}), 412),
        (await api.put(url, json={"value": value, "extra": value}, headers=project.dashboard), 422),
        (await api.get(f"/api/projects/{project.id}/secrets/{value}-not-a-name!", headers=project.dashboard), 422),
        (await api.get(f"/api/projects/{project.id}/secrets/MISSING", headers=project.dashboard), 404),
    ]
    for response, status in refused:
        await expect_error(response, status)

    page = await audit(api, project)
    logged = [e for e in reversed(page["entries"]) if e["action"] == "refused"]
    dashboard_id, engine_id = token_id(settings, project, "dashboard"), token_id(settings, project, "engine")
    other_id = token_id(settings, other, "dashboard")
    assert [(e["status"], e["code"], e["op"], e["actor"], e.get("name")) for e in logged] == [
        (401, "missing_token", "GET", {"kind": "anonymous"}, "API_KEY"),
        (401, "invalid_token", "GET", {"kind": "anonymous"}, "API_KEY"),
        (403, "wrong_token_scope", "PUT", {"kind": "engine", "id": engine_id}, "API_KEY"),
        (404, "project_not_found", "DELETE", {"kind": "dashboard", "id": other_id}, "API_KEY"),
        (412, "version_mismatch", "PUT", {"kind": "dashboard", "id": dashboard_id}, "API_KEY"),
        (422, "invalid_field", "PUT", {"kind": "dashboard", "id": dashboard_id}, "API_KEY"),
        (422, "invalid_name", "GET", {"kind": "dashboard", "id": dashboard_id}, None),  # a malformed name: not kept
        (404, "secret_not_found", "GET", {"kind": "dashboard", "id": dashboard_id}, "MISSING"),
    ]
    assert all(e["store"] == "secret" for e in logged)
    assert value not in str(page)
    other_page = await audit(api, other)  # the other project's token was refused on MY project: logged there only
    assert not [e for e in other_page["entries"] if e["action"] == "refused"]
    with sqlite3.connect(settings.db_path) as conn:
        dumped = "\n".join(str(row) for row in conn.execute("SELECT * FROM audit_log"))
    assert value not in dumped


async def test_refusals_for_a_project_that_does_not_exist_are_not_kept(api: TestClient, settings: Settings) -> None:
    for _ in range(3):
        await expect_error(await api.get("/api/projects/made-up/secrets"), 401)
    with sqlite3.connect(settings.db_path) as conn:
        assert conn.execute("SELECT count(*) FROM audit_log WHERE project_id = 'made-up'").fetchone()[0] == 0


async def test_paging_and_filters(api: TestClient, project: Project, settings: Settings) -> None:
    base = f"/api/projects/{project.id}"
    for i in range(5):
        await api.put(f"{base}/secrets/KEY_{i % 2}", json={"value": f"v{i}"}, headers=project.dashboard)
    middle = time.time()
    await api.put(f"{base}/secrets/LATE", json={"value": "late"}, headers=project.dashboard)

    first = await audit(api, project, limit=2)
    assert len(first["entries"]) == 2 and first["next_before"] == first["entries"][-1]["seq"]
    seen = list(first["entries"])
    page = first
    while page["next_before"] is not None:
        page = await audit(api, project, limit=2, before=page["next_before"])
        seen += page["entries"]
    assert [e["seq"] for e in seen] == sorted({e["seq"] for e in seen}, reverse=True) and len(seen) == 7

    assert [e["version"] for e in (await audit(api, project, name="KEY_0"))["entries"]] == [3, 2, 1]
    assert {e["actor"]["kind"] for e in (await audit(api, project, actor="admin"))["entries"]} == {"admin"}
    dashboard_id = token_id(settings, project, "dashboard")
    for actor in ("dashboard", dashboard_id, f"dashboard:{dashboard_id}"):
        assert len((await audit(api, project, actor=actor))["entries"]) == 6
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(middle)) + f".{int(middle % 1 * 1e6):06d}Z"
    assert [e["name"] for e in (await audit(api, project, since=since))["entries"]] == ["LATE"]
    until = (await audit(api, project, name="LATE"))["entries"][0]["at"]
    assert "LATE" not in [e.get("name") for e in (await audit(api, project, until=until))["entries"]]
    offset = (await audit(api, project, since=since.replace("Z", "+00:00")))["entries"]
    assert [e["name"] for e in offset] == ["LATE"]
    assert (await audit(api, project, headers=admin_headers()))["entries"]  # the admin reads it too

    for bad in (
        {"limit": 0},
        {"limit": 501},
        {"before": "x"},
        {"since": "yesterday"},
        {"until": "2024-01-01T00:00:00"},
        {"until": "0001-01-01T00:06:00+00:09"},  # before year 1 in UTC (found by the fuzzer: it was a 500)
        {"since": "9999-12-31T23:59:00-01:00"},  # after year 9999 in UTC
    ):
        response = await api.get(f"{base}/audit", params={k: str(v) for k, v in bad.items()}, headers=project.dashboard)
        await expect_error(response, 422)


async def test_who_may_read_the_log(api: TestClient, create_project: CreateProject) -> None:
    mine, other = await create_project("Mine"), await create_project("Other")
    url = f"/api/projects/{mine.id}/audit"
    await expect_error(await api.get(url, headers=mine.engine), 403)
    await expect_error(await api.get(url, headers=other.dashboard), 404)
    await expect_error(await api.get(url), 401)
    await expect_error(await api.get("/api/projects/nope/audit", headers=admin_headers()), 404)


async def test_the_log_is_append_only(api: TestClient, project: Project, settings: Settings) -> None:
    await api.put(f"/api/projects/{project.id}/secrets/K", json={"value": "v"}, headers=project.dashboard)
    with sqlite3.connect(settings.db_path) as conn:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("UPDATE audit_log SET name = 'other'")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("DELETE FROM audit_log")


async def test_the_log_of_a_deleted_project_goes_with_it(api: TestClient, project: Project, settings: Settings) -> None:
    await api.put(f"/api/projects/{project.id}/secrets/SECRET_NAME_X", json={"value": "v"}, headers=project.dashboard)
    assert (await api.delete(f"/api/projects/{project.id}", headers=admin_headers())).status == 204
    with sqlite3.connect(settings.db_path) as conn:
        assert conn.execute("SELECT count(*) FROM audit_log WHERE project_id = ?", (project.id,)).fetchone()[0] == 0


def test_refusals_are_bounded_per_project_and_the_gap_is_counted() -> None:
    limiter = RefusalLimiter(burst=3, per_second=1.0)
    assert [limiter.admit("p", 0.0) for _ in range(5)] == [0, 0, 0, None, None]
    assert limiter.admit("other", 0.0) == 0  # buckets are per project
    assert limiter.admit("p", 1.0) == 2  # one token back after a second: written, saying two were dropped
    assert limiter.admit("p", 1.0) is None


def test_entries_never_have_a_value_field() -> None:
    from service.store.audit import AuditEntry

    fields = {f.name for f in msgspec.structs.fields(AuditEntry)}
    assert not {"value", "fields", "ciphertext"} & fields


async def test_the_new_answers_match_the_openapi_document(api: TestClient, project: Project) -> None:
    from service.openapi import build_document
    from tests.service.test_openapi import Checker

    checker = Checker(build_document(api.app.router))
    base = f"/api/projects/{project.id}"
    put = await api.put(f"{base}/secrets/K", json={"value": "a"}, headers=project.dashboard)
    put = await api.put(f"{base}/secrets/K", json={"value": "b", "previous_valid_for_s": 60}, headers=project.dashboard)
    checker.check("/api/projects/{project}/secrets/{name}", "put", put.status, await put.json())
    await api.get(f"{base}/secrets/K")  # a refusal, so the log has one of each kind
    rotated = await api.post(f"{base}/rotate-key", headers=project.dashboard)
    checker.check("/api/projects/{project}/rotate-key", "post", rotated.status, await rotated.json())
    page = await api.get(f"{base}/audit", params={"limit": "3"}, headers=project.dashboard)
    checker.check("/api/projects/{project}/audit", "get", page.status, await page.json())
    bad = await api.get(f"{base}/audit", params={"limit": "0"}, headers=project.dashboard)
    checker.check("/api/projects/{project}/audit", "get", bad.status, await bad.json())
    missing = await api.delete("/api/projects/nope", headers=admin_headers())
    checker.check("/api/projects/{project}", "delete", missing.status, await missing.json())
