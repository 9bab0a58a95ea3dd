"""Every route, every token that is not its own: zero 2xx, and the contract's statuses.

The routes come from the app's router (so a new route is in the matrix the day it is added) and
their auth from their `describe(...)` declaration; a route that needs no token is listed in EXEMPT
with the reason. Each protected route is called on project A's real records, with a valid body, so
the token is the only thing wrong, by:

- no token, a malformed Authorization header, an unknown token                     -> 401
- a token of the wrong scope (engine on a dashboard route, dashboard on an engine
  route, the admin where the admin is not allowed, any token on a grant route)      -> 403
- the right kind of token of project B (dashboard, engine, session cookie, grant)  -> 404
- a grant (bsg_...) where a dashboard or admin token is needed: unknown there      -> 401

Afterwards project A is unchanged: same revision, every record still there.
"""

import secrets as random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import pytest
import redis.asyncio as redis
from aiohttp.test_utils import TestClient
from cryptography.fernet import Fernet

from contract.config import Secret
from contract.executions import FIELD_MESSAGE, request_decoder
from contract.streams import Streams
from service.app import create_app
from service.openapi import Auth, declared_routes, undeclared_routes
from service.settings import Settings
from tests.conftest import CreateProject, Project, admin_headers

# Routes that take no token (or whose only credential is the session cookie they end).
EXEMPT: Final[Mapping[str, str]] = {
    "GET /healthz": "liveness probe: public by design",
    "GET /readyz": "readiness probe: public by design",
    "GET /metrics": "Prometheus scrape: public by design, counts only",
    "GET /api/openapi.json": "the API's description: public by design",
    "GET /variables": "the dashboard page: static HTML, its data comes through the API with a session",
    "GET /credentials": "the credentials page: static HTML, as /variables",
    "GET /static/{file}": "the pages' static files",
    "GET /api/credential-types": "the credential type table: public, no project data",
    "POST /hooks/{project}/{workflow}": "the webhook entry point: public; the workflow verifies its caller",
    "POST /api/session": "signing in: the token comes in the body (its refusals are tested in test_sessions)",
    "DELETE /api/session": "signing out needs no token: it ends the session its cookie names, if any",
}

IDENTITIES: Final = (
    "no token",
    "malformed header",
    "unknown token",
    "admin",
    "A dashboard",
    "A engine",
    "A session",
    "A grant",
    "A other grant",
    "B dashboard",
    "B engine",
    "B session",
    "B grant",
)

# Per kind of route: the status each identity must get; None = that identity is allowed (not in the matrix).
_ANONYMOUS: Final = {"no token": 401, "malformed header": 401, "unknown token": 401}
EXPECTED: Final[Mapping[Auth, Mapping[str, int | None]]] = {
    Auth.DASHBOARD: {
        **_ANONYMOUS,
        "admin": 403,
        "A dashboard": None,
        "A engine": 403,
        "A session": None,
        "A grant": 401,
        "A other grant": 401,
        "B dashboard": 404,
        "B engine": 403,
        "B session": 404,
        "B grant": 401,
    },
    Auth.MANAGER: {
        **_ANONYMOUS,
        "admin": None,
        "A dashboard": None,
        "A engine": 403,
        "A session": None,
        "A grant": 401,
        "A other grant": 401,
        "B dashboard": 404,
        "B engine": 403,
        "B session": 404,
        "B grant": 401,
    },
    Auth.ADMIN: {
        **_ANONYMOUS,
        "admin": None,
        "A dashboard": 403,
        "A engine": 403,
        "A session": 403,
        "A grant": 401,
        "A other grant": 401,
        "B dashboard": 403,
        "B engine": 403,
        "B session": 403,
        "B grant": 401,
    },
    Auth.ENGINE: {
        **_ANONYMOUS,
        "admin": 403,
        "A dashboard": 403,
        "A engine": None,
        "A session": 401,  # the engine endpoint takes no cookie: no Authorization header at all
        "A grant": None,
        "A other grant": None,  # any open grant of the project reads its engine endpoint
        "B dashboard": 403,
        "B engine": 404,
        "B session": 401,
        "B grant": 404,
    },
    Auth.GRANT: {
        **_ANONYMOUS,
        "admin": 403,
        "A dashboard": 403,
        "A engine": 403,
        "A session": 401,
        "A grant": None,
        "A other grant": 404,  # the grant of another execution of the same project
        "B dashboard": 403,
        "B engine": 403,
        "B session": 401,
        "B grant": 404,
    },
    Auth.SESSION: {  # GET /api/session: the cookie's own session, whatever the project
        **_ANONYMOUS,
        "admin": 401,
        "A dashboard": 401,
        "A engine": 401,
        "A session": None,
        "A grant": 401,
        "A other grant": 401,
        "B dashboard": 401,
        "B engine": 401,
        "B session": None,
        "B grant": 401,
    },
}

# A valid body for every route that takes one, so that the token is the only thing wrong.
RESPOND: Final = [{"id": "reply", "type": "respond", "config": {"status": 200, "body": {"ok": True}}}]
BODIES: Final[Mapping[str, Any]] = {
    "POST /api/projects": {"name": "Intruder"},
    "PUT /api/projects/{project}/secrets/{name}": {"value": "overwritten-" + random.token_hex(4)},
    "PUT /api/projects/{project}/frontend-vars/{name}": {"value": "https://overwritten.example"},
    "PUT /api/projects/{project}/credentials/{name}": {"type": "http_bearer", "fields": {"token": "tok_over"}},
    "PUT /api/projects/{project}/workflows/{name}": {"nodes": RESPOND},
    "POST /api/projects/{project}/workflows/{name}/executions": {},
    "POST /api/engine/{project}/executions/{id}/claim": {"worker": "intruder"},
    "POST /api/engine/{project}/executions/{id}/result": {"status": "succeeded", "output": "forged"},
}
QUERIES: Final[Mapping[str, str]] = {"POST /api/projects/{project}/workflows/{name}/executions": "?wait=false"}


def _app_routes() -> dict[str, Auth]:
    """`METHOD path` -> its auth, for every route of a freshly built app (HEAD and OPTIONS aside)."""
    app = create_app(Settings(master_keys=(Secret(Fernet.generate_key().decode()),)))
    assert not undeclared_routes(app.router), undeclared_routes(app.router)
    return {f"{declared.method} {declared.path}": declared.operation.auth for declared in declared_routes(app.router)}


ROUTES: Final = _app_routes()
MATRIX: Final = sorted(label for label in ROUTES if label not in EXEMPT)


@dataclass
class Side:
    project: Project
    cookie: str
    csrf: str
    execution: str
    grant: str
    other_execution: str
    other_grant: str


async def _grant(client: redis.Redis, stream: str, execution_id: str) -> str:
    for _, fields in await client.xrevrange(stream, count=50):
        request = request_decoder.decode(fields[FIELD_MESSAGE])
        if request.id == execution_id:
            return request.grant
    raise AssertionError(f"execution {execution_id} is not on {stream}")


async def _side(api: TestClient, create_project: CreateProject, redis_client: redis.Redis, streams: Streams) -> Side:
    """A project with one record in every store, a session, and two queued executions with their grants."""
    project = await create_project("Side")
    base = f"/api/projects/{project.id}"
    puts = {
        "secrets/SECRET_A": {"value": random.token_hex(8)},
        "frontend-vars/PUBLIC_A": {"value": "https://a.example"},
        "credentials/CRED_A": {"type": "http_bearer", "fields": {"token": "tok_" + random.token_hex(6)}},
        "workflows/flow-a": {"nodes": RESPOND},
    }
    for path, body in puts.items():
        response = await api.put(f"{base}/{path}", json=body, headers=project.dashboard)
        assert response.status == 201, await response.text()
    executions = []
    for _ in range(2):
        response = await api.post(f"{base}/workflows/flow-a/executions?wait=false", headers=project.dashboard)
        assert response.status == 202, await response.text()
        executions.append((await response.json())["id"])
    grants = [await _grant(redis_client, streams.executions, execution) for execution in executions]
    signed_in = await api.post("/api/session", json={"token": project.dashboard_token})
    assert signed_in.status == 200, await signed_in.text()
    cookie = signed_in.cookies["bs_session"].value
    csrf = (await signed_in.json())["csrf_token"]
    api.session.cookie_jar.clear()  # each request below carries exactly the credentials it names
    return Side(project, cookie, csrf, executions[0], grants[0], executions[1], grants[1])


def _credentials(identity: str, a: Side, b: Side) -> dict[str, str]:
    side = a if identity.startswith("A ") else b
    kind = identity.split(" ", 1)[-1]
    match identity:
        case "no token":
            return {}
        case "malformed header":
            return {"Authorization": "Token " + random.token_urlsafe(16)}
        case "unknown token":
            return {"Authorization": "Bearer bsd_" + random.token_urlsafe(32)}
        case "admin":
            return admin_headers()
    match kind:
        case "dashboard":
            return side.project.dashboard
        case "engine":
            return side.project.engine
        case "session":
            return {"Cookie": f"bs_session={side.cookie}", "X-CSRF-Token": side.csrf}
        case "grant":
            return {"Authorization": f"Bearer {side.grant}"}
        case "other grant":
            return {"Authorization": f"Bearer {side.other_grant}"}
    raise AssertionError(identity)


def _path(label: str, a: Side) -> str:
    """The route's path on project A's real records."""
    _, path = label.split(" ", 1)
    values = {
        "{project}": a.project.id,
        "/secrets/{name}": "/secrets/SECRET_A",
        "/frontend-vars/{name}": "/frontend-vars/PUBLIC_A",
        "/credentials/{name}": "/credentials/CRED_A",
        "/workflows/{name}": "/workflows/flow-a",
        "{id}": a.execution,
    }
    for placeholder, value in values.items():
        path = path.replace(placeholder, value)
    assert "{" not in path, f"{label}: add a value for its path parameters to _path()"
    return path + QUERIES.get(label, "")


async def _revision(api: TestClient, project: Project) -> int:
    response = await api.get(f"/api/engine/{project.id}/secrets", headers=project.engine)
    assert response.status == 200, await response.text()
    return int((await response.json())["revision"])


def test_every_route_is_in_the_matrix_or_exempt_with_a_reason() -> None:
    assert set(EXEMPT) <= set(ROUTES), f"stale exemptions: {sorted(set(EXEMPT) - set(ROUTES))}"
    for label in EXEMPT:
        assert ROUTES[label] in (Auth.PUBLIC, Auth.SESSION_OPTIONAL), f"{label} needs a token: it cannot be exempt"
    for label in MATRIX:
        assert ROUTES[label] in EXPECTED, f"{label}: no expectations for {ROUTES[label]}"
    assert len(MATRIX) >= 25


@pytest.mark.parametrize("label", MATRIX)
async def test_no_token_but_its_own_gets_through(
    label: str, api: TestClient, create_project: CreateProject, redis_client: redis.Redis, streams: Streams
) -> None:
    a = await _side(api, create_project, redis_client, streams)
    b = await _side(api, create_project, redis_client, streams)
    before = await _revision(api, a.project)
    method, path = label.split(" ", 1)[0], _path(label, a)
    body = BODIES.get(label)
    if body is None:
        assert label.split(" ", 1)[0] in ("GET", "DELETE") or label.endswith("/rotate-key"), f"{label}: add a body"

    got: dict[str, tuple[int, str]] = {}
    wrong: list[str] = []
    for identity, expected in EXPECTED[ROUTES[label]].items():
        if expected is None:
            continue
        response = await api.request(method, path, json=body, headers=_credentials(identity, a, b))
        text = await response.text()
        code = (await response.json())["error"]["code"] if response.content_type == "application/json" else text
        got[identity] = (response.status, code)
        if response.status != expected:
            wrong.append(f"  {identity:<17} got {response.status} {code}, expected {expected}")
        if method == "GET":  # aiohttp answers HEAD beside every GET: the same refusal, without a body
            head = await api.head(path, headers=_credentials(identity, a, b))
            got[f"{identity} (HEAD)"] = (head.status, "")
            if head.status != expected:
                wrong.append(f"  {identity:<17} got {head.status} on HEAD, expected {expected}")

    table = "\n".join(f"  {identity:<24} {status} {code}" for identity, (status, code) in got.items())
    print(f"{label}\n{table}")
    assert not any(200 <= status < 300 for status, _ in got.values()), f"{label} let a foreign token in:\n{table}"
    assert not wrong, f"{label}:\n" + "\n".join(wrong)
    tried = {identity.removesuffix(" (HEAD)") for identity in got}
    assert tried | {i for i, e in EXPECTED[ROUTES[label]].items() if e is None} == set(IDENTITIES)

    assert await _revision(api, a.project) == before, f"{label}: a refused request changed project A"
    for path_of_record in ("secrets/SECRET_A", "frontend-vars/PUBLIC_A", "credentials/CRED_A", "workflows/flow-a"):
        response = await api.get(f"/api/projects/{a.project.id}/{path_of_record}", headers=a.project.dashboard)
        assert response.status == 200, f"{label}: {path_of_record} is gone after the refused requests"
    response = await api.get(f"/api/projects/{a.project.id}/executions/{a.execution}", headers=a.project.dashboard)
    assert response.status == 200 and (await response.json())["status"] == "queued", await response.text()
