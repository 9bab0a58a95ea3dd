"""Every contract error for bad input: its status and the exact {"error": {"code", "message"}} shape."""

import json

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import CreateProject, Project, admin_headers, bearer
from tests.support.api import expect_error

pytestmark = pytest.mark.timeout(15)

CANARY = "canary-errors-7f3a9c2e51d4"


def secret_url(project: Project, name: str = "API_KEY") -> str:
    return f"/api/projects/{project.id}/secrets/{name}"


# -- 400 / 415 / 413: the body ------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"{", b'{"value": }', b"not json", b'{"value": "x"} trailing', b"\xff\xfe"])
async def test_malformed_json_is_400(api: TestClient, project: Project, body: bytes) -> None:
    response = await api.put(
        secret_url(project), data=body, headers={**project.dashboard, "Content-Type": "application/json"}
    )
    await expect_error(response, 400)


async def test_malformed_json_never_echoes_the_body(api: TestClient, project: Project) -> None:
    body = b'{"value": "' + CANARY.encode() + b'"'
    response = await api.put(
        secret_url(project), data=body, headers={**project.dashboard, "Content-Type": "application/json"}
    )
    await expect_error(response, 400)
    assert CANARY not in await response.text()


async def test_a_long_query_reaches_the_api_and_gets_its_error_shape(api: TestClient, project: Project) -> None:
    """A 20 KiB request line (a long audit filter) is past aiohttp's default 8 KiB, which would answer
    a plain-text 400 before the API saw it."""
    response = await api.get(
        f"/api/projects/{project.id}/audit", params={"name": "N" * 20_000}, headers=project.dashboard
    )
    await expect_error(response, 422)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_a_body_that_is_not_json_is_415(api: TestClient, project: Project, content_type: str | None) -> None:
    headers = dict(project.dashboard)
    if content_type:
        headers["Content-Type"] = content_type
    response = await api.put(secret_url(project), data=json.dumps({"value": "v"}).encode(), headers=headers)
    await expect_error(response, 415)


async def test_json_with_a_charset_is_accepted(api: TestClient, project: Project) -> None:
    response = await api.put(
        secret_url(project),
        data=json.dumps({"value": "v"}).encode(),
        headers={**project.dashboard, "Content-Type": "application/json; charset=utf-8"},
    )
    assert response.status == 201, await response.text()


async def test_a_body_over_the_limit_is_413(api: TestClient, project: Project) -> None:
    huge = json.dumps({"value": "x" * (1024 * 1024)}).encode()
    response = await api.put(
        secret_url(project), data=huge, headers={**project.dashboard, "Content-Type": "application/json"}
    )
    await expect_error(response, 413)
    missing = await api.get(secret_url(project), headers=project.dashboard)
    await expect_error(missing, 404)


# -- 422: fields ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["1ABC", "A-B", "A.B", "A%20B", "%C3%84PFEL", "%E5%90%8D", "A" * 129, "A%0A", "%24X"],
)
async def test_a_bad_secret_name_is_422(api: TestClient, project: Project, name: str) -> None:
    response = await api.put(secret_url(project, name), json={"value": "v"}, headers=project.dashboard)
    await expect_error(response, 422)
    listed = await api.get(f"/api/projects/{project.id}/secrets", headers=project.dashboard)
    assert (await listed.json())["secrets"] == []


@pytest.mark.parametrize("method", ["GET", "DELETE"])
async def test_a_bad_name_on_read_and_delete_is_422(api: TestClient, project: Project, method: str) -> None:
    response = await api.request(method, secret_url(project, "1BAD"), headers=project.dashboard)
    await expect_error(response, 422)


async def test_a_name_of_128_characters_is_fine(api: TestClient, project: Project) -> None:
    response = await api.put(secret_url(project, "N" * 128), json={"value": "v"}, headers=project.dashboard)
    assert response.status == 201, await response.text()
    assert (await response.json())["name"] == "N" * 128


@pytest.mark.parametrize(
    "body",
    [
        {"value": ""},
        {"value": None},
        {"value": 42},
        {"value": ["a"]},
        {"value": {"a": "b"}},
        {},
        {"val": "x"},
        {"value": "x", "extra": 1},
        ["value", "x"],
        "x",
    ],
    ids=["empty", "null", "number", "list", "object", "missing", "misspelt", "unknown-field", "array", "string"],
)
async def test_a_bad_value_is_422(api: TestClient, project: Project, body: object) -> None:
    response = await api.put(secret_url(project), json=body, headers=project.dashboard)
    await expect_error(response, 422)
    missing = await api.get(secret_url(project), headers=project.dashboard)
    await expect_error(missing, 404)


async def test_a_value_of_65537_bytes_is_422_and_the_message_does_not_echo_it(
    api: TestClient, project: Project
) -> None:
    value = CANARY + "x" * (65_537 - len(CANARY))
    response = await api.put(secret_url(project), json={"value": value}, headers=project.dashboard)
    await expect_error(response, 422)
    assert CANARY not in await response.text()


@pytest.mark.parametrize(
    ("value", "status"),
    [
        ("x" * 65_536, 201),
        ("x" * 65_537, 422),
        ("é" * 32_768, 201),  # 2 bytes each: exactly 65,536 bytes
        ("é" * 32_768 + "x", 422),  # 32,769 characters but 65,537 bytes
        ("€" * 21_845 + "x", 201),  # 3 bytes each: 65,536 bytes
        ("€" * 21_846, 422),  # 65,538 bytes, only 21,846 characters
        ("😀" * 16_384, 201),  # 4 bytes each: 65,536 bytes
        ("😀" * 16_384 + "x", 422),
    ],
    ids=[
        "ascii-limit",
        "ascii-over",
        "2byte-limit",
        "2byte-over",
        "3byte-limit",
        "3byte-over",
        "4byte-limit",
        "4byte-over",
    ],
)
async def test_value_size_is_counted_in_utf8_bytes(api: TestClient, project: Project, value: str, status: int) -> None:
    response = await api.put(secret_url(project), json={"value": value}, headers=project.dashboard)
    if status == 201:
        assert response.status == 201, await response.text()
    else:
        await expect_error(response, 422)


async def test_a_single_character_value_is_fine(api: TestClient, project: Project) -> None:
    response = await api.put(secret_url(project), json={"value": " "}, headers=project.dashboard)
    assert response.status == 201, await response.text()


async def test_a_value_with_a_lone_surrogate_is_refused(api: TestClient, project: Project) -> None:
    body = b'{"value": "abc\\ud800def"}'
    response = await api.put(
        secret_url(project), data=body, headers={**project.dashboard, "Content-Type": "application/json"}
    )
    assert response.status in (400, 422)
    await expect_error(response, response.status)
    missing = await api.get(secret_url(project), headers=project.dashboard)
    await expect_error(missing, 404)


# -- 401 / 403 / 404: tokens and scope ------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer   "},
        {"Authorization": "Basic abc"},
    ],
    ids=["absent", "empty", "no-token", "blank-token", "basic"],
)
async def test_a_missing_token_is_401(api: TestClient, project: Project, headers: dict[str, str]) -> None:
    for method, url, kwargs in [
        ("GET", f"/api/projects/{project.id}/secrets", {}),
        ("PUT", secret_url(project), {"json": {"value": "v"}}),
        ("DELETE", secret_url(project), {}),
        ("GET", f"/api/engine/{project.id}/secrets", {}),
        ("POST", "/api/projects", {"json": {"name": "X"}}),
    ]:
        response = await api.request(method, url, headers=headers, **kwargs)
        await expect_error(response, 401)


async def test_an_unknown_token_is_401(api: TestClient, project: Project) -> None:
    forged = bearer(project.dashboard_token + "x")
    for method, url, kwargs in [
        ("GET", f"/api/projects/{project.id}/secrets", {}),
        ("PUT", secret_url(project), {"json": {"value": "v"}}),
        ("GET", f"/api/engine/{project.id}/secrets", {}),
        ("POST", "/api/projects", {"json": {"name": "X"}}),
    ]:
        response = await api.request(method, url, headers=forged, **kwargs)
        await expect_error(response, 401)


async def test_the_bearer_scheme_is_case_insensitive(api: TestClient, project: Project) -> None:
    response = await api.get(
        f"/api/projects/{project.id}/secrets", headers={"Authorization": f"bearer {project.dashboard_token}"}
    )
    assert response.status == 200


async def test_the_engine_token_cannot_use_the_dashboard_routes(api: TestClient, project: Project) -> None:
    for method, url, kwargs in [
        ("GET", f"/api/projects/{project.id}/secrets", {}),
        ("GET", secret_url(project), {}),
        ("PUT", secret_url(project), {"json": {"value": "v"}}),
        ("DELETE", secret_url(project), {}),
    ]:
        response = await api.request(method, url, headers=project.engine, **kwargs)
        await expect_error(response, 403)


async def test_the_dashboard_token_cannot_read_the_engine_endpoint(api: TestClient, project: Project) -> None:
    await api.put(secret_url(project), json={"value": CANARY}, headers=project.dashboard)
    response = await api.get(f"/api/engine/{project.id}/secrets", headers=project.dashboard)
    await expect_error(response, 403)
    assert CANARY not in await response.text()


async def test_project_tokens_cannot_create_projects(api: TestClient, project: Project) -> None:
    for headers in (project.dashboard, project.engine):
        response = await api.post("/api/projects", json={"name": "Other"}, headers=headers)
        await expect_error(response, 403)


async def test_the_admin_token_cannot_manage_a_projects_secrets(api: TestClient, project: Project) -> None:
    response = await api.get(f"/api/projects/{project.id}/secrets", headers=admin_headers())
    await expect_error(response, 403)
    response = await api.get(f"/api/engine/{project.id}/secrets", headers=admin_headers())
    await expect_error(response, 403)


async def test_another_projects_tokens_get_404_as_for_a_project_that_does_not_exist(
    api: TestClient, create_project: CreateProject
) -> None:
    mine, theirs = await create_project("Mine"), await create_project("Theirs")
    await api.put(secret_url(mine), json={"value": CANARY}, headers=mine.dashboard)
    responses = [
        await api.get(f"/api/projects/{mine.id}/secrets", headers=theirs.dashboard),
        await api.get(secret_url(mine), headers=theirs.dashboard),
        await api.put(secret_url(mine), json={"value": "overwrite"}, headers=theirs.dashboard),
        await api.delete(secret_url(mine), headers=theirs.dashboard),
        await api.get(f"/api/engine/{mine.id}/secrets", headers=theirs.engine),
    ]
    nowhere = [
        await api.get("/api/projects/no-such-project/secrets", headers=theirs.dashboard),
        await api.get("/api/engine/no-such-project/secrets", headers=theirs.engine),
    ]
    errors = [await expect_error(r, 404) for r in responses + nowhere]
    # The same answer whether the project exists or not: nothing to learn from it.
    assert {e["code"] for e in errors} == {errors[-1]["code"]}
    for response in responses:
        assert CANARY not in await response.text()
    intact = await api.get(secret_url(mine), headers=mine.dashboard)
    assert (await intact.json())["version"] == 1


async def test_an_unknown_secret_is_404(api: TestClient, project: Project) -> None:
    await expect_error(await api.get(secret_url(project, "NOPE"), headers=project.dashboard), 404)
    await expect_error(await api.delete(secret_url(project, "NOPE"), headers=project.dashboard), 404)


async def test_names_are_case_sensitive(api: TestClient, project: Project) -> None:
    await api.put(secret_url(project, "API_KEY"), json={"value": "v"}, headers=project.dashboard)
    await expect_error(await api.get(secret_url(project, "api_key"), headers=project.dashboard), 404)


async def test_an_unknown_route_is_404_json(api: TestClient) -> None:
    await expect_error(await api.get("/api/nothing-here"), 404)


async def test_a_wrong_method_is_405_json(api: TestClient, project: Project) -> None:
    await expect_error(await api.post(secret_url(project), json={"value": "v"}, headers=project.dashboard), 405)


# -- 412: versions --------------------------------------------------------------------------------


async def test_if_match_guards_overwrites_and_deletes(api: TestClient, project: Project) -> None:
    url = secret_url(project)
    await api.put(url, json={"value": "one"}, headers=project.dashboard)
    await api.put(url, json={"value": "two"}, headers=project.dashboard)

    stale = await api.put(url, json={"value": "three"}, headers={**project.dashboard, "If-Match": "1"})
    await expect_error(stale, 412)
    stale_delete = await api.delete(url, headers={**project.dashboard, "If-Match": '"1"'})
    await expect_error(stale_delete, 412)
    assert (await (await api.get(url, headers=project.dashboard)).json())["version"] == 2

    fresh = await api.put(url, json={"value": "three"}, headers={**project.dashboard, "If-Match": '"2"'})
    assert fresh.status == 200 and (await fresh.json())["version"] == 3
    deleted = await api.delete(url, headers={**project.dashboard, "If-Match": "3"})
    assert deleted.status == 204


async def test_if_match_on_a_secret_that_does_not_exist_is_412(api: TestClient, project: Project) -> None:
    response = await api.put(secret_url(project), json={"value": "v"}, headers={**project.dashboard, "If-Match": "1"})
    await expect_error(response, 412)
    await expect_error(await api.get(secret_url(project), headers=project.dashboard), 404)


async def test_the_etag_is_what_if_match_takes(api: TestClient, project: Project) -> None:
    put = await api.put(secret_url(project), json={"value": "v"}, headers=project.dashboard)
    etag = put.headers["ETag"]
    response = await api.put(secret_url(project), json={"value": "w"}, headers={**project.dashboard, "If-Match": etag})
    assert response.status == 200, await response.text()


# -- projects: 409 / 422 --------------------------------------------------------------------------


async def test_a_duplicate_project_id_is_409(api: TestClient, create_project: CreateProject) -> None:
    await create_project("Shop", id="shop")
    response = await api.post("/api/projects", json={"name": "Other shop", "id": "shop"}, headers=admin_headers())
    await expect_error(response, 409)


@pytest.mark.parametrize("project_id", ["Shop", "-shop", "shop_1", "a" * 64, "", "shop/1", "ä", 7])
async def test_a_bad_project_id_is_422(api: TestClient, project_id: object) -> None:
    response = await api.post("/api/projects", json={"name": "Shop", "id": project_id}, headers=admin_headers())
    await expect_error(response, 422)


@pytest.mark.parametrize(
    "body", [{}, {"name": ""}, {"name": "   "}, {"name": "x" * 201}, {"name": 5}, {"name": "A", "x": 1}]
)
async def test_a_bad_project_body_is_422(api: TestClient, body: object) -> None:
    response = await api.post("/api/projects", json=body, headers=admin_headers())
    await expect_error(response, 422)


async def test_project_creation_checks_json_and_content_type(api: TestClient) -> None:
    headers = {**admin_headers(), "Content-Type": "application/json"}
    await expect_error(await api.post("/api/projects", data=b"{", headers=headers), 400)
    text = {**admin_headers(), "Content-Type": "text/plain"}
    await expect_error(await api.post("/api/projects", data=b'{"name": "x"}', headers=text), 415)
