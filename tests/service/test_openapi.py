"""GET /api/openapi.json: every route declared, a valid OpenAPI 3.1 document, schemas that match real answers.

A route added without `@describe(...)` fails `test_every_route_is_in_the_document`: see the note at
the top of service/openapi.py.
"""

from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from service.app import create_app
from service.openapi import SKIPPED_METHODS, build_document, undeclared_routes
from service.settings import Settings
from tests.conftest import CreateProject, Project, admin_headers

SECRET_VALUE = "sk_test_openapi_value_never_listed"


@pytest.fixture
def app(settings: Settings) -> web.Application:
    return create_app(settings)  # routes are added by the factory: no need to start it


@pytest.fixture
def document(app: web.Application) -> dict[str, Any]:
    return build_document(app.router)


def _route_keys(app: web.Application) -> set[tuple[str, str]]:
    return {
        (route.resource.canonical, route.method.lower())
        for route in app.router.routes()
        if route.resource is not None and route.method not in SKIPPED_METHODS
    }


def test_every_route_is_in_the_document(app: web.Application, document: dict[str, Any]) -> None:
    assert undeclared_routes(app.router) == [], "declare these routes with service.openapi.describe"
    documented = {(path, method) for path, item in document["paths"].items() for method in item}
    assert documented == _route_keys(app)


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1")
    validate(document)  # raises on any violation of the OpenAPI 3.1 schema, refs included


def test_every_operation_documents_its_auth_and_errors(document: dict[str, Any]) -> None:
    schemes = set(document["components"]["securitySchemes"])
    operation_ids = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            operation_ids.append(operation["operationId"])
            named = {name for requirement in operation["security"] for name in requirement}
            assert named <= schemes, (method, path)
            assert "default" in operation["responses"], (method, path)
            if operation["security"] and {} not in operation["security"]:
                assert _error_ref(operation, "401") == "#/components/schemas/ErrorBody", (method, path)
    assert len(operation_ids) == len(set(operation_ids))


def _error_ref(operation: dict[str, Any], status: str) -> str:
    return str(operation["responses"][status]["content"]["application/json"]["schema"]["$ref"])


def test_auth_schemes_match_the_routes(document: dict[str, Any]) -> None:
    paths = document["paths"]
    assert paths["/api/projects"]["post"]["security"] == [{"adminToken": []}]
    assert paths["/api/projects/{project}/secrets/{name}"]["put"]["security"] == [
        {"dashboardToken": []},
        {"sessionCookie": []},
    ]
    assert {"engineToken": []} in paths["/api/engine/{project}/secrets"]["get"]["security"]
    assert paths["/healthz"]["get"]["security"] == []
    assert paths["/hooks/{project}/{workflow}"]["post"]["security"] == []


def test_schemas_come_from_the_handlers_types(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert schemas["ErrorBody"]["required"] == ["error"]
    assert set(schemas["ErrorDetail"]["required"]) == {"code", "message"}
    assert set(schemas["SecretMeta"]["properties"]) >= {"name", "version", "created_at", "updated_at"}
    assert "value" not in schemas["SecretMeta"]["properties"]  # write-only: never answered
    assert schemas["PutSecret"]["required"] == ["value"]
    assert schemas["PutSecret"]["additionalProperties"] is False


async def test_the_service_serves_the_document(api: TestClient, document: dict[str, Any]) -> None:
    response = await api.get("/api/openapi.json")
    assert response.status == 200
    assert response.content_type == "application/json"
    assert await response.json() == document


class Checker:
    """Validates real answers against the document's schema for (path, method, status)."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document

    def check(self, path: str, method: str, status: int, body: Any) -> None:
        responses = self.document["paths"][path][method]["responses"]
        declared = responses.get(str(status), responses["default"])
        schema = declared["content"]["application/json"]["schema"]
        validator = Draft202012Validator({**schema, "components": self.document["components"]})
        errors = [error.message for error in validator.iter_errors(body)]
        assert not errors, (method, path, status, errors)


async def _answer(api: TestClient, method: str, url: str, **kwargs: Any) -> tuple[int, Any]:
    response = await api.request(method, url, **kwargs)
    return response.status, await response.json()


async def test_real_answers_match_the_document(
    api: TestClient, project: Project, create_project: CreateProject, document: dict[str, Any]
) -> None:
    checker = Checker(document)
    secret = f"/api/projects/{project.id}/secrets/STRIPE_KEY"
    checks = [
        ("/healthz", "get", *await _answer(api, "GET", "/healthz")),
        ("/readyz", "get", *await _answer(api, "GET", "/readyz")),
        (
            "/api/projects",
            "post",
            *await _answer(api, "POST", "/api/projects", json={"name": "Other"}, headers=admin_headers()),
        ),
        (
            "/api/projects/{project}/secrets/{name}",
            "put",
            *await _answer(api, "PUT", secret, json={"value": SECRET_VALUE}, headers=project.dashboard),
        ),
        (
            "/api/projects/{project}/secrets/{name}",
            "put",
            *await _answer(api, "PUT", secret, json={"value": SECRET_VALUE + "2"}, headers=project.dashboard),
        ),
        (
            "/api/projects/{project}/secrets/{name}",
            "get",
            *await _answer(api, "GET", secret, headers=project.dashboard),
        ),
        (
            "/api/projects/{project}/secrets",
            "get",
            *await _answer(api, "GET", f"/api/projects/{project.id}/secrets", headers=project.dashboard),
        ),
        (
            "/api/engine/{project}/secrets",
            "get",
            *await _answer(api, "GET", f"/api/engine/{project.id}/secrets", headers=project.engine),
        ),
        ("/api/projects/{project}/secrets/{name}", "get", *await _answer(api, "GET", secret)),  # 401
        (
            "/api/projects/{project}/secrets/{name}",
            "put",
            *await _answer(api, "PUT", secret, json={"value": ""}, headers=project.dashboard),
        ),  # 422
        (
            "/api/projects/{project}/secrets/{name}",
            "get",
            *await _answer(api, "GET", f"/api/projects/{project.id}/secrets/MISSING", headers=project.dashboard),
        ),  # 404
    ]
    statuses = [status for *_, status, _ in checks]
    assert statuses == [200, 200, 201, 201, 200, 200, 200, 200, 401, 422, 404]
    for path, method, status, body in checks:
        checker.check(path, method, status, body)


async def test_more_answers_match_the_document(api: TestClient, project: Project, document: dict[str, Any]) -> None:
    checker = Checker(document)
    workflow = {"nodes": [{"id": "reply", "type": "respond", "config": {"body": "${ secrets.NOT_SET_YET }"}}]}
    base = f"/api/projects/{project.id}"
    checks = [
        (
            "/api/projects/{project}/workflows/{name}",
            "put",
            *await _answer(api, "PUT", f"{base}/workflows/reply", json=workflow, headers=project.dashboard),
        ),
        (
            "/api/projects/{project}/workflows",
            "get",
            *await _answer(api, "GET", f"{base}/workflows", headers=project.dashboard),
        ),
        (
            "/api/projects/{project}/frontend-vars/{name}",
            "put",
            *await _answer(
                api,
                "PUT",
                f"{base}/frontend-vars/PUBLIC_URL",
                json={"value": "https://shop.example"},
                headers=project.dashboard,
            ),
        ),
        (
            "/api/projects/{project}/frontend-vars",
            "get",
            *await _answer(api, "GET", f"{base}/frontend-vars", headers=project.dashboard),
        ),
        (
            "/api/projects/{project}/executions",
            "get",
            *await _answer(api, "GET", f"{base}/executions", headers=project.dashboard),
        ),
        ("/api/session", "get", *await _answer(api, "GET", "/api/session")),
    ]
    assert [status for *_, status, _ in checks] == [201, 200, 201, 200, 200, 401]
    assert checks[0][3]["warnings"] == ["NOT_SET_YET"]
    for path, method, status, body in checks:
        checker.check(path, method, status, body)
