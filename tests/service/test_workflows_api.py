"""Workflows as a dashboard user sees them: saved, validated, versioned, listed, deleted."""

import asyncio
import time
from typing import Any

import msgspec
import pytest
import redis.asyncio as redis
from aiohttp.test_utils import TestClient

from contract.events import decode_event
from contract.streams import FIELD_EVENT, Streams
from tests.conftest import CreateProject, Project, bearer
from tests.support.api import assert_rfc3339_utc, expect_error

pytestmark = pytest.mark.timeout(20)

STRIPE_WORKFLOW: dict[str, Any] = {
    "trigger": {"type": "webhook"},
    "nodes": [
        {"id": "verify", "type": "verify_webhook", "config": {"scheme": "stripe", "secret": "${ secrets.STRIPE_KEY }"}},
        {
            "id": "notify",
            "type": "http_request",
            "config": {
                "url": "https://example.invalid/notify",
                "method": "POST",
                "headers": {"Authorization": "Bearer ${ ctx.secrets.API_TOKEN }"},
                "json": {"event": "${ input.body.type }", "at": "${ nodes.verify.output.timestamp }"},
            },
        },
        {"id": "reply", "type": "respond", "config": {"status": 200, "body": {"ok": True}}},
    ],
}


def url(project: Project, name: str = "stripe") -> str:
    return f"/api/projects/{project.id}/workflows/{name}"


def node(node_id: str, node_type: str, **config: Any) -> dict[str, Any]:
    return {"id": node_id, "type": node_type, "config": config}


async def test_put_creates_then_overwrites_and_get_returns_the_definition(api: TestClient, project: Project) -> None:
    created = await api.put(url(project), json=STRIPE_WORKFLOW, headers=project.dashboard)
    overwritten = await api.put(url(project), json=STRIPE_WORKFLOW, headers=project.dashboard)
    fetched = await api.get(url(project), headers=project.dashboard)
    assert (created.status, overwritten.status, fetched.status) == (201, 200, 200)
    first, second, body = await created.json(), await overwritten.json(), await fetched.json()
    assert (first["version"], second["version"], body["version"]) == (1, 2, 2)
    assert body["name"] == "stripe" and fetched.headers["ETag"] == '"2"'
    assert body["trigger"] == {"type": "webhook"}
    assert [n["id"] for n in body["nodes"]] == ["verify", "notify", "reply"]
    assert body["nodes"][1]["config"]["headers"]["Authorization"] == "Bearer ${ ctx.secrets.API_TOKEN }"
    assert first["created_at"] == body["created_at"]
    assert assert_rfc3339_utc(body["updated_at"]) >= assert_rfc3339_utc(body["created_at"])


async def test_list_and_delete(api: TestClient, project: Project) -> None:
    for name in ("b-flow", "a_flow"):
        assert (await api.put(url(project, name), json=STRIPE_WORKFLOW, headers=project.dashboard)).status == 201
    listed = await (await api.get(f"/api/projects/{project.id}/workflows", headers=project.dashboard)).json()
    assert [w["name"] for w in listed["workflows"]] == ["a_flow", "b-flow"]
    assert set(listed["workflows"][0]) == {"name", "version", "created_at", "updated_at"}
    assert (await api.delete(url(project, "a_flow"), headers=project.dashboard)).status == 204
    await expect_error(await api.get(url(project, "a_flow"), headers=project.dashboard), 404, "workflow_not_found")
    await expect_error(await api.delete(url(project, "a_flow"), headers=project.dashboard), 404, "workflow_not_found")


async def test_if_match_guards_overwrite_and_delete(api: TestClient, project: Project) -> None:
    await api.put(url(project), json=STRIPE_WORKFLOW, headers=project.dashboard)
    stale = {**project.dashboard, "If-Match": '"7"'}
    await expect_error(await api.put(url(project), json=STRIPE_WORKFLOW, headers=stale), 412, "version_mismatch")
    await expect_error(await api.delete(url(project), headers=stale), 412, "version_mismatch")
    fresh = {**project.dashboard, "If-Match": '"1"'}
    assert (await api.put(url(project), json=STRIPE_WORKFLOW, headers=fresh)).status == 200


async def test_changes_publish_events_and_bump_the_revision(
    api: TestClient, project: Project, redis_client: redis.Redis, streams: Streams
) -> None:
    await api.put(url(project), json=STRIPE_WORKFLOW, headers=project.dashboard)
    await api.delete(url(project), headers=project.dashboard)
    deadline = time.monotonic() + 5
    entries = await redis_client.xrange(streams.events)
    for _ in range(500):  # the relay publishes right after the commit; wait for the three events
        if len(entries) >= 3 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.01)
        entries = await redis_client.xrange(streams.events)
    events = [msgspec.to_builtins(decode_event(fields[FIELD_EVENT])) for _, fields in entries]
    changes = [(e["type"], e.get("name"), e.get("version"), e["revision"]) for e in events[1:]]
    assert changes == [("workflow.put", "stripe", 1, 1), ("workflow.delete", "stripe", 1, 2)]


async def test_missing_secrets_are_saved_with_a_warning(api: TestClient, project: Project) -> None:
    first = await (await api.put(url(project), json=STRIPE_WORKFLOW, headers=project.dashboard)).json()
    assert first["warnings"] == ["API_TOKEN", "STRIPE_KEY"]
    for name in ("API_TOKEN", "STRIPE_KEY"):
        secret_url = f"/api/projects/{project.id}/secrets/{name}"
        await api.put(secret_url, json={"value": "canary-value"}, headers=project.dashboard)
    second = await (await api.put(url(project), json=STRIPE_WORKFLOW, headers=project.dashboard)).json()
    assert second["warnings"] == []


def _with(*nodes: dict[str, Any]) -> dict[str, Any]:
    return {"nodes": list(nodes)}


INVALID: list[tuple[str, dict[str, Any], str, list[str]]] = [
    ("unknown type", _with(node("a", "send_email")), "unknown_node_type", ["'a'", "type", "send_email"]),
    ("missing field", _with(node("v", "verify_webhook", scheme="stripe")), "invalid_node_config", ["'v'", "secret"]),
    (
        "unknown field",
        _with(node("r", "respond", status=200, colour="red")),
        "invalid_node_config",
        ["'r'", "colour"],
    ),
    ("wrong type", _with(node("r", "respond", status="ok")), "invalid_node_config", ["'r'", "config.status"]),
    ("status range", _with(node("r", "respond", status=700)), "invalid_node_config", ["'r'", "status"]),
    ("scheme", _with(node("v", "verify_webhook", scheme="md5", secret="x")), "invalid_node_config", ["scheme"]),
    ("duplicate id", _with(node("a", "respond"), node("a", "respond")), "duplicate_node_id", ["'a'", "id"]),
    ("bad id", _with(node("a b", "respond")), "invalid_node_id", ["node #1", "id"]),
    (
        "malformed expression",
        _with(node("h", "http_request", url="https://x.invalid", headers={"X-Key": "${ secrets.bad-name }"})),
        "invalid_expression",
        ["'h'", "config.headers.X-Key", "secrets.bad-name"],
    ),
    (
        "unclosed expression",
        _with(node("h", "http_request", url="https://x.invalid/${ input.query.q")),
        "invalid_expression",
        ["'h'", "config.url"],
    ),
    (
        "unknown root",
        _with(node("r", "respond", body={"a": ["${ env.HOME }"]})),
        "invalid_expression",
        ["'r'", "config.body.a[0]"],
    ),
    (
        "later node",
        _with(node("r", "respond", body="${ nodes.h.output.status }"), node("h", "http_request", url="https://x")),
        "invalid_node_reference",
        ["'r'", "'h'"],
    ),
    (
        "own output",
        _with(node("r", "respond", body="${ nodes.r.output }")),
        "invalid_node_reference",
        ["'r'"],
    ),
    ("no nodes", {"nodes": []}, "invalid_workflow", ["at least one node"]),
    ("no nodes key", {"trigger": {"type": "webhook"}}, "invalid_workflow", ["nodes"]),
    ("bad trigger", {"trigger": {"type": "cron"}, "nodes": [node("r", "respond")]}, "invalid_workflow", ["trigger"]),
]


@pytest.mark.parametrize(("case", "workflow", "code", "fragments"), INVALID, ids=[c[0] for c in INVALID])
async def test_invalid_workflows_are_refused_naming_node_and_field(
    api: TestClient, project: Project, case: str, workflow: dict[str, Any], code: str, fragments: list[str]
) -> None:
    error = await expect_error(await api.put(url(project), json=workflow, headers=project.dashboard), 422, code)
    for fragment in fragments:
        assert fragment in error["message"], (case, error)
    await expect_error(await api.get(url(project), headers=project.dashboard), 404, "workflow_not_found")


CODE_NODE_REFUSALS: list[tuple[str, dict[str, Any]]] = [
    ("expression in code", {"code": "return '${ secrets.STRIPE_KEY }';"}),
    ("ctx.secrets in code", {"code": "return ctx.secrets.STRIPE_KEY;"}),
    ("ctx['secrets'] in code", {"code": "const s = ctx['secrets']; return s.KEY;"}),
    ("destructured", {"code": "const { env, secrets } = ctx; return secrets.KEY;"}),
    ("expression in env_vars", {"code": "return ctx.env.K;", "env_vars": {"K": "${ ctx.secrets.STRIPE_KEY }"}}),
    ("credential", {"code": "return 1;", "credential": "stripe_prod"}),
]


@pytest.mark.parametrize(("case", "config"), CODE_NODE_REFUSALS, ids=[c[0] for c in CODE_NODE_REFUSALS])
async def test_code_node_may_not_reference_secrets(
    api: TestClient, project: Project, case: str, config: dict[str, Any]
) -> None:
    workflow = {"nodes": [{"id": "js", "type": "javascript_code", "config": config}]}
    response = await api.put(url(project), json=workflow, headers=project.dashboard)
    error = await expect_error(response, 422, "secrets_not_allowed_in_code_node")
    assert "'js'" in error["message"] and "canary" not in error["message"]


async def test_code_node_with_env_and_js_template_literals_is_saved(api: TestClient, project: Project) -> None:
    code = "const who = ctx.env.GREETING; return { text: `${who}, ${ctx.input.body.name}` };"
    workflow = {"nodes": [node("js", "javascript_code", code=code, env_vars={"GREETING": "hello"})]}
    response = await api.put(url(project), json=workflow, headers=project.dashboard)
    assert response.status == 201, await response.text()
    assert (await response.json())["warnings"] == []


async def test_expressions_may_stand_in_for_any_field_type(api: TestClient, project: Project) -> None:
    workflow = _with(
        node("v", "verify_webhook", scheme="hmac_sha256", secret="${secrets.K}", tolerance_s="${ input.query.t }"),
        node("r", "respond", status="${ input.body.status }", body="${ nodes.v.output }", headers={"X": "$${ literal"}),
    )
    response = await api.put(url(project), json=workflow, headers=project.dashboard)
    assert response.status == 201, await response.text()
    assert (await response.json())["warnings"] == ["K"]


async def test_body_and_name_errors(api: TestClient, project: Project) -> None:
    headers = project.dashboard
    await expect_error(await api.put(url(project, "bad name!"), json=STRIPE_WORKFLOW, headers=headers), 422)
    await expect_error(await api.put(url(project, "x" * 129), json=STRIPE_WORKFLOW, headers=headers), 422)
    await expect_error(
        await api.put(url(project), data=b"{", headers={**headers, "Content-Type": "application/json"}), 400
    )
    await expect_error(await api.put(url(project), data=b"nodes", headers=headers), 415)
    await expect_error(await api.put(url(project), json=[1, 2], headers=headers), 422, "invalid_workflow")


async def test_tokens_and_projects_are_checked(
    api: TestClient, project: Project, create_project: CreateProject
) -> None:
    other = await create_project("Other")
    await api.put(url(project), json=STRIPE_WORKFLOW, headers=project.dashboard)
    await expect_error(await api.get(url(project)), 401, "missing_token")
    await expect_error(await api.get(url(project), headers=bearer("bsd_nope")), 401, "invalid_token")
    await expect_error(await api.get(url(project), headers=project.engine), 403, "wrong_token_scope")
    await expect_error(await api.get(url(project), headers=other.dashboard), 404)
    await expect_error(await api.put(url(project), json=STRIPE_WORKFLOW, headers=other.dashboard), 404)
