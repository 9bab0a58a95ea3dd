"""Cookie sessions for the dashboard page: sign-in, cookie flags, CSRF, sign-out, and the page's headers."""

import re
import sqlite3
import time
from http.cookies import SimpleCookie
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from service.settings import Settings
from tests.conftest import ADMIN_TOKEN, CreateProject, Project

pytestmark = pytest.mark.timeout(20)


def session_cookie(response: object) -> SimpleCookie:
    headers = response.headers.getall("Set-Cookie")  # type: ignore[attr-defined]
    cookie: SimpleCookie = SimpleCookie()
    for header in headers:
        cookie.load(header)
    return cookie


async def sign_in(api: TestClient, project: Project) -> str:
    """Sign the test client in (its cookie jar keeps the cookie); returns the CSRF token."""
    response = await api.post("/api/session", json={"token": project.dashboard_token})
    assert response.status == 200, await response.text()
    return str((await response.json())["csrf_token"])


def secret_url(project: Project, name: str = "API_KEY") -> str:
    return f"/api/projects/{project.id}/secrets/{name}"


async def test_sign_in_sets_a_strict_httponly_cookie(api: TestClient, project: Project) -> None:
    response = await api.post("/api/session", json={"token": project.dashboard_token})
    assert response.status == 200
    body = await response.json()
    assert body["project"] == project.id and len(body["csrf_token"]) >= 32 and body["expires_at"].endswith("Z")
    assert response.headers["Cache-Control"] == "no-store"
    morsel = session_cookie(response)["bs_session"]
    assert morsel["httponly"] is True
    assert morsel["samesite"] == "Strict"
    assert morsel["path"] == "/"
    assert not morsel["secure"]  # plain HTTP here
    assert int(morsel["max-age"]) > 0
    assert project.dashboard_token not in response.headers["Set-Cookie"]
    assert body["csrf_token"] not in response.headers["Set-Cookie"]


async def test_the_cookie_is_secure_behind_a_tls_proxy(api: TestClient, project: Project) -> None:
    response = await api.post(
        "/api/session", json={"token": project.dashboard_token}, headers={"X-Forwarded-Proto": "https"}
    )
    assert response.status == 200
    assert session_cookie(response)["bs_session"]["secure"] is True


async def test_sign_in_refusals(api: TestClient, project: Project) -> None:
    cases = [
        ({"token": "bsd_not-a-real-token"}, 401, "invalid_token"),
        ({"token": ""}, 401, "invalid_token"),
        ({"token": project.engine_token}, 403, "wrong_token_scope"),
        ({"token": ADMIN_TOKEN}, 403, "wrong_token_scope"),
        ({}, 422, "invalid_field"),
        ({"token": 5}, 422, "invalid_field"),
    ]
    for body, status, code in cases:
        response = await api.post("/api/session", json=body)
        assert (response.status, (await response.json())["error"]["code"]) == (status, code), body
        assert "Set-Cookie" not in response.headers
    not_json = await api.post(
        "/api/session", data="token=x", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert not_json.status == 415


async def test_the_cookie_reads_the_dashboard_api_without_a_bearer(api: TestClient, project: Project) -> None:
    await api.put(secret_url(project), json={"value": "canary-session-1"}, headers=project.dashboard)
    assert (await api.get(f"/api/projects/{project.id}/secrets")).status == 401
    await sign_in(api, project)
    listed = await api.get(f"/api/projects/{project.id}/secrets")
    assert listed.status == 200
    assert [s["name"] for s in (await listed.json())["secrets"]] == ["API_KEY"]
    assert (await api.get(f"/api/projects/{project.id}/frontend-vars")).status == 200
    current = await api.get("/api/session")
    assert current.status == 200 and (await current.json())["project"] == project.id


async def test_changes_with_the_cookie_need_the_csrf_token(api: TestClient, project: Project) -> None:
    csrf = await sign_in(api, project)
    changes = [
        ("PUT", secret_url(project), {"value": "canary-csrf"}),
        ("DELETE", secret_url(project), None),
        ("PUT", f"/api/projects/{project.id}/frontend-vars/FLAG", {"value": "on"}),
        ("DELETE", f"/api/projects/{project.id}/frontend-vars/FLAG", None),
        ("DELETE", "/api/session", None),
    ]
    for method, url, body in changes:
        for headers in ({}, {"X-CSRF-Token": "wrong"}, {"X-CSRF-Token": ""}, {"X-CSRF-Token": csrf + "x"}):
            response = await api.request(method, url, json=body, headers=headers)
            assert response.status == 403, (method, url, headers)
            assert (await response.json())["error"]["code"] == "csrf_failed"
    assert (await api.get(f"/api/projects/{project.id}/secrets")).status == 200  # still signed in
    listed = await api.get(f"/api/projects/{project.id}/secrets")
    assert (await listed.json())["secrets"] == []  # nothing was written

    put = await api.put(secret_url(project), json={"value": "canary-csrf"}, headers={"X-CSRF-Token": csrf})
    assert put.status == 201
    var = await api.put(
        f"/api/projects/{project.id}/frontend-vars/FLAG", json={"value": "on"}, headers={"X-CSRF-Token": csrf}
    )
    assert var.status == 201
    deleted = await api.delete(secret_url(project), headers={"X-CSRF-Token": csrf})
    assert deleted.status == 204


async def test_bearer_requests_need_no_csrf_even_with_a_cookie(api: TestClient, project: Project) -> None:
    await sign_in(api, project)
    response = await api.put(secret_url(project), json={"value": "canary-bearer"}, headers=project.dashboard)
    assert response.status == 201


async def test_a_session_is_bound_to_its_project(api: TestClient, create_project: CreateProject) -> None:
    mine, theirs = await create_project("Mine"), await create_project("Theirs")
    csrf = await sign_in(api, mine)
    assert (await api.get(f"/api/projects/{theirs.id}/secrets")).status == 404
    put = await api.put(secret_url(theirs), json={"value": "x"}, headers={"X-CSRF-Token": csrf})
    assert put.status == 404
    assert (await api.post("/api/projects", json={"name": "Nope"}, headers={"X-CSRF-Token": csrf})).status == 403
    assert (await api.get(f"/api/engine/{mine.id}/secrets")).status == 401  # the engine route takes no cookie


async def test_sign_out_ends_the_session(api: TestClient, project: Project) -> None:
    csrf = await sign_in(api, project)
    stolen = api.session.cookie_jar.filter_cookies(api.make_url("/"))["bs_session"].value
    response = await api.delete("/api/session", headers={"X-CSRF-Token": csrf})
    assert response.status == 204
    cleared = session_cookie(response)["bs_session"]
    assert cleared.value == "" and int(cleared["max-age"]) == 0
    assert (await api.get("/api/session")).status == 401
    # The old cookie, replayed, is dead on the server too.
    replay = await api.get(f"/api/projects/{project.id}/secrets", cookies={"bs_session": stolen})
    assert replay.status == 401
    assert (await replay.json())["error"]["code"] == "session_expired"
    again = await api.delete("/api/session")
    assert again.status == 204


async def test_not_signed_in(api: TestClient) -> None:
    response = await api.get("/api/session")
    assert (response.status, (await response.json())["error"]["code"]) == (401, "not_signed_in")
    garbage = await api.get("/api/session", cookies={"bs_session": "forged"})
    assert (garbage.status, (await garbage.json())["error"]["code"]) == (401, "session_expired")


async def test_sessions_store_only_a_hash_and_expire(api: TestClient, project: Project, settings: Settings) -> None:
    await sign_in(api, project)
    cookie = api.session.cookie_jar.filter_cookies(api.make_url("/"))["bs_session"].value
    db = sqlite3.connect(Path(settings.db_path))
    try:
        rows = db.execute("SELECT id_hash, expires_at FROM sessions").fetchall()
        assert len(rows) == 1 and cookie.encode() not in rows[0][0]
        assert 11 * 3600 < rows[0][1] - time.time() <= 12 * 3600
        with db:
            db.execute("UPDATE sessions SET expires_at = ?", (time.time() - 1,))
    finally:
        db.close()
    expired = await api.get(f"/api/projects/{project.id}/secrets")
    assert (expired.status, (await expired.json())["error"]["code"]) == (401, "session_expired")


async def test_the_page_is_served_with_a_strict_policy(api: TestClient) -> None:
    page = await api.get("/variables")
    assert page.status == 200 and page.content_type == "text/html"
    html = await page.text()
    assert "Backend Secrets" in html and "Frontend (Build)" in html
    csp = page.headers["Content-Security-Policy"]
    directives = {d.split()[0]: d.split()[1:] for d in csp.split("; ")}
    assert directives["script-src"] == ["'self'"]
    assert directives["frame-ancestors"] == ["'none'"]
    assert directives["default-src"] == ["'none'"]
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert "<script>" not in html and not re.search(r"\son[a-z]+\s*=", html)  # no inline script or handlers
    for asset, content_type in [("variables.js", "text/javascript"), ("variables.css", "text/css")]:
        response = await api.get(f"/static/{asset}")
        assert response.status == 200 and response.content_type == content_type
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    for missing in ["/static/nope.js", "/static/..%2Fapp.py", "/static/%2e%2e%2f__init__.py"]:
        assert (await api.get(missing)).status == 404


async def test_sign_in_also_takes_the_token_as_a_bearer_and_returns_the_csrf_header(
    api: TestClient, project: Project
) -> None:
    response = await api.post("/api/session", headers=project.dashboard)
    assert response.status == 200
    body = await response.json()
    assert response.headers["X-CSRF-Token"] == body["csrf_token"]
    assert "bs_session" in session_cookie(response)
    current = await api.get("/api/session")
    assert current.headers["X-CSRF-Token"] == body["csrf_token"]
    refused = await api.post("/api/session", headers=project.engine)
    assert refused.status == 403


async def test_every_sign_in_is_a_new_session(api: TestClient, project: Project) -> None:
    first = await sign_in(api, project)
    first_cookie = api.session.cookie_jar.filter_cookies(api.make_url("/"))["bs_session"].value
    second = await sign_in(api, project)
    second_cookie = api.session.cookie_jar.filter_cookies(api.make_url("/"))["bs_session"].value
    assert first != second and first_cookie != second_cookie
    put = await api.put(secret_url(project), json={"value": "canary-two"}, headers={"X-CSRF-Token": first})
    assert put.status == 403  # the CSRF token is bound to its own session
