"""The Credentials routes as a dashboard user (and the engine) sees them: typed, encrypted, write-only."""

import asyncio
import io
import json
import logging
import re
import secrets as random
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
import redis.asyncio as redis
from aiohttp.test_utils import TestClient
from cryptography.fernet import Fernet

from contract.credential_types import CREDENTIAL_TYPES
from contract.events import decode_event
from contract.sealing import SealError, open_sealed
from contract.streams import FIELD_EVENT, Streams
from tests.conftest import CreateProject, Project, admin_headers
from tests.service.test_events import wait_for_entries
from tests.service.test_openapi import Checker
from tests.support.api import assert_rfc3339_utc, expect_error

pytestmark = pytest.mark.timeout(20)

META_KEYS = {"name", "type", "version", "created_at", "updated_at"}


def canary(prefix: str = "") -> str:
    return f"{prefix}canary{random.token_hex(10)}"


def stripe_key() -> str:
    return canary("sk_test_")


def url(project: Project, name: str | None = None) -> str:
    base = f"/api/projects/{project.id}/credentials"
    return base if name is None else f"{base}/{name}"


async def put(api: TestClient, project: Project, name: str, kind: str, fields: dict[str, Any], **headers: str) -> Any:
    return await api.put(
        url(project, name), json={"type": kind, "fields": fields}, headers={**project.dashboard, **headers}
    )


async def engine_snapshot(api: TestClient, project: Project) -> dict[str, Any]:
    response = await api.get(f"/api/engine/{project.id}/secrets", headers=project.engine)
    assert response.status == 200
    body: dict[str, Any] = await response.json()
    return body


# ---- the type table ---------------------------------------------------------------------------------


async def test_credential_types_are_public_and_describe_fields_and_auth(api: TestClient, project: Project) -> None:
    anonymous = await api.get("/api/credential-types")
    with_token = await api.get("/api/credential-types", headers=project.dashboard)
    assert anonymous.status == with_token.status == 200
    body = await anonymous.json()
    assert body == await with_token.json()
    by_type = {t["type"]: t for t in body["credential_types"]}
    assert list(by_type) == ["stripe", "openai", "slack", "resend", "http_bearer", "http_basic"]
    fields = {name: [f["name"] for f in t["fields"]] for name, t in by_type.items()}
    assert fields == {
        "stripe": ["secret_key"],
        "openai": ["api_key"],
        "slack": ["bot_token"],
        "resend": ["api_key"],
        "http_bearer": ["token"],
        "http_basic": ["username", "password"],
    }
    assert by_type["stripe"]["auth"] == {"scheme": "bearer", "field": "secret_key"}
    assert by_type["slack"]["auth"] == {"scheme": "bearer", "field": "bot_token"}
    assert by_type["http_basic"]["auth"] == {
        "scheme": "basic",
        "username_field": "username",
        "password_field": "password",
    }
    assert by_type["stripe"]["fields"][0]["pattern"] == r"^sk_(?:test|live)_[0-9A-Za-z_]+$"
    assert by_type["slack"]["fields"][0]["pattern"].startswith("^xoxb-")
    assert by_type["resend"]["fields"][0]["pattern"].startswith("^re_")
    assert [f["secret"] for f in by_type["http_basic"]["fields"]] == [False, True]
    for kind in body["credential_types"]:
        assert {"type", "label", "description", "fields", "auth"} == set(kind)
        for field in kind["fields"]:
            assert {"name", "label", "secret", "pattern", "hint"} == set(field)


# ---- create, overwrite, read metadata, delete -------------------------------------------------------


async def test_put_creates_then_overwrites_and_answers_metadata_only(api: TestClient, project: Project) -> None:
    first, second = stripe_key(), stripe_key()
    created = await put(api, project, "STRIPE", "stripe", {"secret_key": first})
    assert created.status == 201
    body = await created.json()
    assert set(body) == META_KEYS
    assert (body["name"], body["type"], body["version"]) == ("STRIPE", "stripe", 1)
    assert created.headers["ETag"] == '"1"'
    assert_rfc3339_utc(body["created_at"])
    overwritten = await put(api, project, "STRIPE", "stripe", {"secret_key": second})
    assert overwritten.status == 200
    again = await overwritten.json()
    assert (again["version"], again["created_at"]) == (2, body["created_at"])
    assert assert_rfc3339_utc(again["updated_at"]) >= assert_rfc3339_utc(body["updated_at"])
    for text in (await created.text(), await overwritten.text()):
        assert first not in text and second not in text


@pytest.mark.parametrize(
    ("kind", "fields"),
    [
        ("stripe", {"secret_key": "sk_live_51HxQ2eKZvKYlo2C0aBcDeFg"}),
        ("openai", {"api_key": "sk-proj-abcdefghijklmnopqrstuvwxyz012345"}),
        ("slack", {"bot_token": "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy"}),
        ("resend", {"api_key": "re_123456789_abcdefghijklmnop"}),
        ("http_bearer", {"token": "eyJhbGciOiJIUzI1NiJ9.e30.abc-_~+/="}),
        ("http_basic", {"username": "shop user é", "password": "p@ss: wörd with spaces"}),
    ],
)
async def test_every_type_accepts_a_well_formed_credential(
    api: TestClient, project: Project, kind: str, fields: dict[str, str]
) -> None:
    response = await put(api, project, "CRED", kind, fields)
    assert response.status == 201, await response.text()
    assert (await response.json())["type"] == kind
    text = await response.text()
    assert all(value not in text for value in fields.values())


async def test_list_and_get_show_type_and_metadata_never_a_value(api: TestClient, project: Project) -> None:
    values = {"ZED": stripe_key(), "ALPHA": canary("re_"), "mid": canary()}
    await put(api, project, "ZED", "stripe", {"secret_key": values["ZED"]})
    await put(api, project, "ALPHA", "resend", {"api_key": values["ALPHA"]})
    await put(api, project, "mid", "http_basic", {"username": values["mid"], "password": canary()})
    listed = await api.get(url(project), headers=project.dashboard)
    assert listed.status == 200
    body = await listed.json()
    assert set(body) == {"credentials"}
    assert [(c["name"], c["type"], c["version"]) for c in body["credentials"]] == [
        ("ALPHA", "resend", 1),
        ("ZED", "stripe", 1),
        ("mid", "http_basic", 1),
    ]
    assert all(set(c) == META_KEYS for c in body["credentials"])
    one = await api.get(url(project, "ALPHA"), headers=project.dashboard)
    assert one.status == 200 and one.headers["ETag"] == '"1"'
    assert await one.json() == body["credentials"][0]
    for text in (await listed.text(), await one.text()):
        assert not any(value in text for value in values.values())


async def test_an_empty_project_lists_no_credentials(api: TestClient, project: Project) -> None:
    response = await api.get(url(project), headers=project.dashboard)
    assert (response.status, await response.json()) == (200, {"credentials": []})


async def test_delete_is_204_then_the_credential_is_gone(api: TestClient, project: Project) -> None:
    await put(api, project, "GONE", "http_bearer", {"token": canary()})
    deleted = await api.delete(url(project, "GONE"), headers=project.dashboard)
    assert deleted.status == 204 and await deleted.read() == b""
    await expect_error(await api.get(url(project, "GONE"), headers=project.dashboard), 404, "credential_not_found")
    await expect_error(await api.delete(url(project, "GONE"), headers=project.dashboard), 404, "credential_not_found")
    assert await (await api.get(url(project), headers=project.dashboard)).json() == {"credentials": []}
    recreated = await put(api, project, "GONE", "http_bearer", {"token": canary()})
    assert recreated.status == 201 and (await recreated.json())["version"] == 1


async def test_an_overwrite_may_change_the_type(api: TestClient, project: Project) -> None:
    await put(api, project, "API", "http_bearer", {"token": canary()})
    response = await put(api, project, "API", "http_basic", {"username": "u", "password": canary()})
    assert response.status == 200
    assert ((await response.json())["type"], (await response.json())["version"]) == ("http_basic", 2)
    snapshot = await engine_snapshot(api, project)
    assert [(c["name"], c["type"], c["version"]) for c in snapshot["credentials"]] == [("API", "http_basic", 2)]


async def test_if_match(api: TestClient, project: Project) -> None:
    fields = {"secret_key": stripe_key()}
    await expect_error(await put(api, project, "K", "stripe", fields, **{"If-Match": "1"}), 412, "version_mismatch")
    await put(api, project, "K", "stripe", fields)
    await expect_error(await put(api, project, "K", "stripe", fields, **{"If-Match": '"7"'}), 412, "version_mismatch")
    matched = await put(api, project, "K", "stripe", fields, **{"If-Match": '"1"'})
    assert matched.status == 200 and (await matched.json())["version"] == 2
    await expect_error(await put(api, project, "K", "stripe", fields, **{"If-Match": "v2"}), 400, "invalid_if_match")
    stale = await api.delete(url(project, "K"), headers={**project.dashboard, "If-Match": "1"})
    await expect_error(stale, 412, "version_mismatch")
    fresh = await api.delete(url(project, "K"), headers={**project.dashboard, "If-Match": "2"})
    assert fresh.status == 204


async def test_concurrent_puts_each_get_their_own_version(api: TestClient, project: Project) -> None:
    responses = await asyncio.gather(*(put(api, project, "RACE", "http_bearer", {"token": f"t{i}"}) for i in range(12)))
    assert sorted([(await r.json())["version"] for r in responses]) == list(range(1, 13))
    assert sorted(r.status for r in responses) == [200] * 11 + [201]


# ---- refusals ---------------------------------------------------------------------------------------

SECRET_IN_BODY = "sk_live_" + "canaryrefused" + "9f8e7d6c"


@pytest.mark.parametrize(
    ("body", "code", "names"),
    [
        ({"type": "github", "fields": {"token": SECRET_IN_BODY}}, "unknown_credential_type", "stripe"),
        ({"type": "stripe", "fields": {}}, "missing_field", "fields.secret_key"),
        ({"type": "http_basic", "fields": {"username": "u"}}, "missing_field", "fields.password"),
        (
            {"type": "stripe", "fields": {"secret_key": SECRET_IN_BODY, "api_key": SECRET_IN_BODY}},
            "unknown_field",
            "fields.api_key",
        ),
        ({"type": "stripe", "fields": {"secret_key": "pk_live_" + SECRET_IN_BODY}}, "invalid_field_value", "sk_test_"),
        ({"type": "stripe", "fields": {"secret_key": SECRET_IN_BODY + "\n"}}, "invalid_field_value", "whitespace"),
        ({"type": "stripe", "fields": {"secret_key": ""}}, "invalid_field_value", "empty"),
        ({"type": "slack", "fields": {"bot_token": "xoxp-" + SECRET_IN_BODY}}, "invalid_field_value", "xoxb-"),
        ({"type": "resend", "fields": {"api_key": "rk_" + SECRET_IN_BODY}}, "invalid_field_value", "re_"),
        ({"type": "openai", "fields": {"api_key": "sk proj " + SECRET_IN_BODY}}, "invalid_field_value", "api_key"),
        (
            {"type": "http_bearer", "fields": {"token": SECRET_IN_BODY + "\r\nX-Evil: 1"}},
            "invalid_field_value",
            "token",
        ),
        (
            {"type": "http_basic", "fields": {"username": "a:" + SECRET_IN_BODY, "password": "p"}},
            "invalid_field_value",
            "colon",
        ),
        (
            {"type": "http_basic", "fields": {"username": "u", "password": SECRET_IN_BODY + "\x00"}},
            "invalid_field_value",
            "fields.password",
        ),
        (
            {"type": "http_bearer", "fields": {"token": "a" * 65_537 + SECRET_IN_BODY}},
            "value_too_large",
            "65536",
        ),
        ({"type": "stripe", "fields": {"secret_key": 42}}, "invalid_field_value", "fields.secret_key"),
        ({"type": "stripe", "fields": {"secret_key": None}}, "missing_field", "fields.secret_key"),
        ({"type": "stripe", "fields": {SECRET_IN_BODY: "x"}}, "unknown_field", "fields: a stripe"),
        ({"type": "stripe", "fields": []}, "invalid_field", "fields"),
        ({"type": "stripe"}, "invalid_field", "fields"),
        ({"fields": {"secret_key": SECRET_IN_BODY}}, "invalid_field", "type"),
        (
            {"type": "stripe", "fields": {"secret_key": SECRET_IN_BODY}, "value": SECRET_IN_BODY},
            "invalid_field",
            "value",
        ),
    ],
)
async def test_invalid_credentials_are_422_naming_the_field_never_the_value(
    api: TestClient, project: Project, body: dict[str, Any], code: str, names: str
) -> None:
    response = await api.put(url(project, "BAD"), json=body, headers=project.dashboard)
    error = await expect_error(response, 422, code)
    assert names in error["message"]
    assert SECRET_IN_BODY not in error["message"] and "canaryrefused" not in error["message"]
    await expect_error(await api.get(url(project, "BAD"), headers=project.dashboard), 404)


async def test_malformed_requests(api: TestClient, project: Project) -> None:
    good = {"type": "stripe", "fields": {"secret_key": stripe_key()}}
    await expect_error(await api.put(url(project, "1BAD"), json=good, headers=project.dashboard), 422, "invalid_name")
    await expect_error(
        await api.put(url(project, "A" * 129), json=good, headers=project.dashboard), 422, "invalid_name"
    )
    await expect_error(await api.get(url(project, "no-dash"), headers=project.dashboard), 422, "invalid_name")
    await expect_error(await api.delete(url(project, "no-dash"), headers=project.dashboard), 422, "invalid_name")
    malformed = await api.put(
        url(project, "K"),
        data=b'{"type": "stripe", "fields": ',
        headers={**project.dashboard, "Content-Type": "application/json"},
    )
    await expect_error(malformed, 400, "malformed_json")
    not_json = await api.put(
        url(project, "K"), data=b"type=stripe", headers={**project.dashboard, "Content-Type": "text/plain"}
    )
    await expect_error(not_json, 415)
    huge = {"type": "http_bearer", "fields": {"token": "a" * 600_000}}
    await expect_error(await api.put(url(project, "K"), json=huge, headers=project.dashboard), 413)
    await expect_error(await api.get(url(project, "NOPE"), headers=project.dashboard), 404, "credential_not_found")


async def test_a_refused_change_moves_nothing(api: TestClient, project: Project) -> None:
    await put(api, project, "K", "stripe", {"secret_key": stripe_key()})
    revision = (await engine_snapshot(api, project))["revision"]
    await expect_error(await put(api, project, "K", "stripe", {"secret_key": "nope"}), 422)
    await expect_error(await put(api, project, "K", "stripe", {"secret_key": stripe_key()}, **{"If-Match": "9"}), 412)
    await expect_error(await api.delete(url(project, "NOPE"), headers=project.dashboard), 404)
    snapshot = await engine_snapshot(api, project)
    assert snapshot["revision"] == revision
    assert [c["version"] for c in snapshot["credentials"]] == [1]


# ---- who may call -----------------------------------------------------------------------------------


async def test_tokens_and_scopes(api: TestClient, create_project: CreateProject) -> None:
    mine, theirs = await create_project("Mine"), await create_project("Theirs")
    await put(api, theirs, "THEIRS", "stripe", {"secret_key": stripe_key()})
    body = {"type": "stripe", "fields": {"secret_key": stripe_key()}}
    for method in ("GET", "PUT", "DELETE"):
        target = url(theirs, "THEIRS")
        json_body = body if method == "PUT" else None
        await expect_error(await api.request(method, target, json=json_body), 401)
        await expect_error(
            await api.request(method, target, json=json_body, headers={"Authorization": "Bearer bsd_nope"}), 401
        )
        await expect_error(
            await api.request(method, target, json=json_body, headers=theirs.engine), 403, "wrong_token_scope"
        )
        await expect_error(
            await api.request(method, target, json=json_body, headers=admin_headers()), 403, "wrong_token_scope"
        )
        # Another project's dashboard token: 404, as if the project did not exist.
        await expect_error(
            await api.request(method, target, json=json_body, headers=mine.dashboard), 404, "project_not_found"
        )
    await expect_error(await api.get(url(theirs), headers=mine.dashboard), 404, "project_not_found")
    missing = await api.get("/api/projects/no-such-project/credentials", headers=mine.dashboard)
    await expect_error(missing, 404, "project_not_found")
    listed = await (await api.get(url(theirs), headers=theirs.dashboard)).json()
    assert [c["version"] for c in listed["credentials"]] == [1]  # untouched by all of the above
    assert await (await api.get(url(mine), headers=mine.dashboard)).json() == {"credentials": []}


async def test_the_session_cookie_works_and_changes_need_the_csrf_token(api: TestClient, project: Project) -> None:
    signed_in = await api.post("/api/session", json={"token": project.dashboard_token})
    csrf = (await signed_in.json())["csrf_token"]
    body = {"type": "http_bearer", "fields": {"token": canary()}}
    refused = await api.put(url(project, "VIA_COOKIE"), json=body)
    await expect_error(refused, 403, "csrf_failed")
    created = await api.put(url(project, "VIA_COOKIE"), json=body, headers={"X-CSRF-Token": csrf})
    assert created.status == 201
    assert (await api.get(url(project))).status == 200
    await expect_error(await api.delete(url(project, "VIA_COOKIE")), 403, "csrf_failed")
    assert (await api.delete(url(project, "VIA_COOKIE"), headers={"X-CSRF-Token": csrf})).status == 204


# ---- the engine, events, revision ------------------------------------------------------------------


async def test_the_engine_endpoint_carries_ciphertexts_that_open_to_the_fields(
    api: TestClient, project: Project
) -> None:
    key, password = stripe_key(), canary()
    await put(api, project, "STRIPE", "stripe", {"secret_key": key})
    await put(api, project, "PARTNER", "http_basic", {"username": "shop", "password": password})
    await api.put(f"/api/projects/{project.id}/secrets/PLAIN", json={"value": "s"}, headers=project.dashboard)
    response = await api.get(f"/api/engine/{project.id}/secrets", headers=project.engine)
    text = await response.text()
    assert key not in text and password not in text
    body = await response.json()
    assert body["revision"] == 3
    assert [s["name"] for s in body["secrets"]] == ["PLAIN"]
    assert [(c["name"], c["type"], c["version"]) for c in body["credentials"]] == [
        ("PARTNER", "http_basic", 1),
        ("STRIPE", "stripe", 1),
    ]
    assert all(set(c) == {"name", "type", "version", "ciphertext"} for c in body["credentials"])
    fernet = Fernet(body["data_key"])
    by_name = {c["name"]: c["ciphertext"] for c in body["credentials"]}
    assert json.loads(open_sealed(fernet, by_name["STRIPE"], project.id, "credential", "STRIPE")) == {"secret_key": key}
    partner = json.loads(open_sealed(fernet, by_name["PARTNER"], project.id, "credential", "PARTNER"))
    assert partner == {"username": "shop", "password": password}
    with pytest.raises(SealError):  # a credential is no secret of the same name
        open_sealed(fernet, by_name["STRIPE"], project.id, "secret", "STRIPE")
    with pytest.raises(SealError):  # nor another credential
        open_sealed(fernet, by_name["STRIPE"], project.id, "credential", "PARTNER")


async def test_every_change_publishes_one_event_and_bumps_the_revision(
    api: TestClient, project: Project, redis_client: redis.Redis, streams: Streams
) -> None:
    values = [stripe_key(), stripe_key()]
    await put(api, project, "STRIPE", "stripe", {"secret_key": values[0]})
    await put(api, project, "STRIPE", "stripe", {"secret_key": values[1]})
    await api.delete(url(project, "STRIPE"), headers=project.dashboard)
    entries = await wait_for_entries(redis_client, streams.events, 4)
    events = [msgspec.to_builtins(decode_event(fields[FIELD_EVENT])) for _, fields in entries]
    mine = [e for e in events if e["project"] == project.id]
    assert [(e["type"], e.get("name"), e.get("version"), e["revision"]) for e in mine] == [
        ("project.create", None, None, 0),
        ("credential.put", "STRIPE", 1, 1),
        ("credential.put", "STRIPE", 2, 2),
        ("credential.delete", "STRIPE", 2, 3),
    ]
    raw = b"".join(b"".join(fields.values()) for _, fields in entries)
    assert all(value.encode() not in raw for value in values)
    assert (await engine_snapshot(api, project))["revision"] == 3


async def test_no_value_in_any_log_line(api: TestClient, project: Project, log_stream: io.StringIO) -> None:
    values = [stripe_key(), canary(), canary()]
    await put(api, project, "STRIPE", "stripe", {"secret_key": values[0]})
    await put(api, project, "BASIC", "http_basic", {"username": "u", "password": values[1]})
    await put(api, project, "BAD", "stripe", {"secret_key": "x" + values[2]})  # refused
    await put(api, project, "BAD", "nope", {"secret_key": values[2]})  # refused
    await api.get(f"/api/engine/{project.id}/secrets", headers=project.engine)
    await api.delete(url(project, "STRIPE"), headers=project.dashboard)
    text = log_stream.getvalue()
    assert "/credentials/STRIPE" in text  # the requests were logged...
    assert all(value not in text for value in values)  # ...without a value


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


# ---- the frontend guardrail -------------------------------------------------------------------------


async def test_a_frontend_var_equal_to_a_credential_field_is_refused(api: TestClient, project: Project) -> None:
    token, password, username = canary("tok-"), canary("pw-"), "shop-" + random.token_hex(4)
    await put(api, project, "INTERNAL_API", "http_bearer", {"token": token})
    await put(api, project, "PARTNER", "http_basic", {"username": username, "password": password})

    async def put_var(value: str) -> Any:
        return await api.put(
            f"/api/projects/{project.id}/frontend-vars/VITE_X", json={"value": value}, headers=project.dashboard
        )

    for value, name in [(token, "INTERNAL_API"), (password, "PARTNER")]:
        error = await expect_error(await put_var(value), 422, "looks_like_secret")
        assert f"Credential '{name}'" in error["message"] and value not in error["message"]
    # A username is no secret: a public copy of it is fine.
    assert (await put_var(username)).status == 201

    # An overwrite forgets the old value; a delete forgets them all.
    new_token = canary("tok-")
    await put(api, project, "INTERNAL_API", "http_bearer", {"token": new_token})
    assert (await put_var(token)).status == 200
    await expect_error(await put_var(new_token), 422, "looks_like_secret")
    await api.delete(url(project, "PARTNER"), headers=project.dashboard)
    assert (await put_var(password)).status == 200


async def test_a_stripe_key_credential_is_refused_as_a_frontend_var(api: TestClient, project: Project) -> None:
    key = stripe_key()
    await put(api, project, "STRIPE", "stripe", {"secret_key": key})
    response = await api.put(
        f"/api/projects/{project.id}/frontend-vars/VITE_STRIPE", json={"value": key}, headers=project.dashboard
    )
    error = await expect_error(response, 422, "looks_like_secret")
    assert key not in error["message"]


def test_the_table_is_the_one_the_route_serves() -> None:
    assert set(CREDENTIAL_TYPES) == {"stripe", "openai", "slack", "resend", "http_bearer", "http_basic"}


async def test_answers_match_the_openapi_document(api: TestClient, project: Project) -> None:
    checker = Checker(await (await api.get("/api/openapi.json")).json())
    one = "/api/projects/{project}/credentials/{name}"
    key = stripe_key()
    answers = [
        ("/api/credential-types", "get", await api.get("/api/credential-types")),
        (one, "put", await put(api, project, "STRIPE", "stripe", {"secret_key": key})),
        (one, "put", await put(api, project, "STRIPE", "stripe", {"secret_key": key})),
        (one, "put", await put(api, project, "STRIPE", "stripe", {"secret_key": "nope"})),
        (one, "get", await api.get(url(project, "STRIPE"), headers=project.dashboard)),
        (one, "get", await api.get(url(project, "NOPE"), headers=project.dashboard)),
        ("/api/projects/{project}/credentials", "get", await api.get(url(project), headers=project.dashboard)),
        ("/api/projects/{project}/credentials", "get", await api.get(url(project))),
        (
            "/api/engine/{project}/secrets",
            "get",
            await api.get(f"/api/engine/{project.id}/secrets", headers=project.engine),
        ),
    ]
    assert [response.status for *_, response in answers] == [200, 201, 200, 422, 200, 404, 200, 401, 200]
    for path, method, response in answers:
        checker.check(path, method, response.status, await response.json())


async def test_the_page_is_served_with_a_strict_policy(api: TestClient) -> None:
    page = await api.get("/credentials")
    assert page.status == 200 and page.content_type == "text/html"
    html = await page.text()
    assert "Credentials" in html and 'href="/variables"' in html
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert "<script>" not in html and not re.search(r"\son[a-z]+\s*=", html)  # no inline script or handlers
    script = await api.get("/static/credentials.js")
    assert script.status == 200 and script.content_type == "text/javascript"
    assert 'href="/credentials"' in await (await api.get("/variables")).text()


async def test_the_engine_answer_is_one_snapshot_of_secrets_and_credentials(api: TestClient, project: Project) -> None:
    """Secrets, credentials, key and revision come from one statement: one consistent snapshot."""
    await api.put(f"/api/projects/{project.id}/secrets/EARLY", json={"value": "v"}, headers=project.dashboard)
    await put(api, project, "LATE", "http_bearer", {"token": canary()})
    body = await engine_snapshot(api, project)
    assert body["revision"] == 2
    assert [s["name"] for s in body["secrets"]] == ["EARLY"]
    assert [c["name"] for c in body["credentials"]] == ["LATE"]
