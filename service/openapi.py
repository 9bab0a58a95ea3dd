"""The OpenAPI 3.1 document (`GET /api/openapi.json`), generated from the msgspec types the handlers use.

HOW A ROUTE DECLARES ITSELF. Every route must (tests/service/test_openapi.py fails on one that
does not): put `@describe(...)` right under its `@routes.<method>(path)` line.

    @routes.put("/api/projects/{project}/secrets/{name}")
    @describe(
        "Create or overwrite a secret",
        auth=Auth.DASHBOARD,                             # who may call it (Auth below)
        body=PutSecret,                                  # the type the handler gives read_json
        responses={201: SecretMeta, 200: SecretMeta},    # what it gives json_response, by status
        errors=(412, 422),                               # error statuses beyond the usual ones
        headers={"If-Match": str},                       # request headers it reads (query= likewise)
    )
    async def put_secret(request: web.Request) -> web.Response: ...

- Method and path come from the router, so the document cannot drift from the routes.
- A response is a type (JSON; its schema is msgspec's), `None` (no body) or `Media(...)` (anything
  not JSON). Handlers encode Structs, never hand-made dicts, so the schema is what goes out.
- Every operation also gets the error body (`ErrorBody`: {"error": {"code", "message"}}) for the
  usual statuses: 401 and 403 when it needs a token, 404 when its path has a parameter, 400, 413,
  415 and 422 when it takes a body; for `errors`; and as `default` (500, 503, ...), which
  `responses={"default": ...}` replaces.
- A new route module also goes into the tuple in `service.app.create_app`.
"""

import enum
import http
import inspect
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Final, TypeVar

import msgspec
from aiohttp import web

from contract.names import PROJECT_ID_RE, SECRET_NAME_MAX, SECRET_NAME_RE
from service.errors import ErrorBody
from service.workflow_validation import WORKFLOW_NAME_MAX, WORKFLOW_NAME_RE

H = TypeVar("H", bound=Callable[..., Any])

REF_TEMPLATE: Final = "#/components/schemas/{name}"
TITLE: Final = "Backend Secrets"
API_VERSION: Final = "0.1.0"
SKIPPED_METHODS: Final = frozenset({"HEAD", "OPTIONS"})  # HEAD is added by aiohttp beside every GET
_PATH_PARAM = re.compile(r"\{([^}/:]+)(?::[^}]*)?\}")
PATH_PARAMS: Final[Mapping[str, object]] = {
    "project": Annotated[str, msgspec.Meta(pattern=f"^{PROJECT_ID_RE.pattern}$")],
}
# The name of a secret, frontend var or credential, for `describe(path={"name": STORE_NAME})`.
STORE_NAME: Final = Annotated[str, msgspec.Meta(pattern=f"^{SECRET_NAME_RE.pattern}$", max_length=SECRET_NAME_MAX)]
WORKFLOW_NAME: Final = Annotated[
    str, msgspec.Meta(pattern=f"^{WORKFLOW_NAME_RE.pattern}$", max_length=WORKFLOW_NAME_MAX)
]
# `If-Match: 3`, `"3"` or `W/"3"`: the version in the ETag (anything else is a 400, service.validation).
IF_MATCH: Final = Annotated[str, msgspec.Meta(pattern='^(W/)?"*[0-9]+"*$')]


class Auth(enum.Enum):
    """Who may call a route: the security schemes any one of which is accepted ("" = none needed)."""

    PUBLIC = ()
    ADMIN = ("adminToken",)
    DASHBOARD = ("dashboardToken", "sessionCookie")
    MANAGER = ("adminToken", "dashboardToken", "sessionCookie")  # the admin, or the project's dashboard
    SESSION = ("sessionCookie",)
    SESSION_OPTIONAL = ("sessionCookie", "")
    ENGINE = ("engineToken", "executionGrant")
    GRANT = ("executionGrant",)


SECURITY_SCHEMES: Final = {
    "adminToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "The bootstrap admin token (BACKEND_SECRETS_ADMIN_TOKEN): creates projects.",
    },
    "dashboardToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "A project's dashboard token (bsd_...): manages its stores, never reads a secret value.",
    },
    "sessionCookie": {
        "type": "apiKey",
        "in": "cookie",
        "name": "bs_session",
        "description": "The dashboard page's session (POST /api/session). A change made with it must carry "
        "the session's CSRF token in X-CSRF-Token.",
    },
    "engineToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "A project's engine token (bse_...): reads that project's engine endpoint only.",
    },
    "executionGrant": {
        "type": "http",
        "scheme": "bearer",
        "description": "The grant of one execution (bsg_...), minted by the service for a worker: "
        "scoped to the project, expiring with the execution.",
    },
}


@dataclass(frozen=True, slots=True)
class Media:
    """A body that is not JSON (or not only JSON): its media type and the schema of its content."""

    media_type: str
    schema: object = str


@dataclass(frozen=True, slots=True)
class Operation:
    summary: str
    auth: Auth
    responses: Mapping[int | str, object]
    body: object = None
    body_required: bool = True
    errors: tuple[int, ...] = ()
    query: Mapping[str, object] = field(default_factory=dict)
    headers: Mapping[str, object] = field(default_factory=dict)
    path: Mapping[str, object] = field(default_factory=dict)


_DECLARED: dict[Callable[..., Any], Operation] = {}


def describe(
    summary: str,
    *,
    auth: Auth,
    responses: Mapping[int | str, object],
    body: object = None,
    body_required: bool = True,
    errors: tuple[int, ...] = (),
    query: Mapping[str, object] | None = None,
    headers: Mapping[str, object] | None = None,
    path: Mapping[str, object] | None = None,
) -> Callable[[H], H]:
    """Declare a handler's operation for the document (see the module's docstring)."""
    operation = Operation(summary, auth, responses, body, body_required, errors, query or {}, headers or {}, path or {})

    def register(handler: H) -> H:
        _DECLARED[handler] = operation
        return handler

    return register


@dataclass(frozen=True, slots=True)
class Declared:
    path: str
    method: str
    handler: Callable[..., Any]
    operation: Operation


def _routes(router: web.UrlDispatcher) -> Iterator[tuple[str, web.AbstractRoute]]:
    for route in router.routes():
        if route.method not in SKIPPED_METHODS and route.resource is not None:
            yield route.resource.canonical, route


def undeclared_routes(router: web.UrlDispatcher) -> list[str]:
    """`METHOD /path` of every route whose handler has no `describe(...)`."""
    return [f"{route.method} {path}" for path, route in _routes(router) if route.handler not in _DECLARED]


def declared_routes(router: web.UrlDispatcher) -> list[Declared]:
    return [
        Declared(path, route.method, route.handler, _DECLARED[route.handler])
        for path, route in _routes(router)
        if route.handler in _DECLARED
    ]


class _Schemas:
    """Every type the operations name, turned into schemas in one msgspec call (shared components)."""

    def __init__(self, types: list[object]) -> None:
        unique = list(dict.fromkeys(types))
        schemas, self.components = msgspec.json.schema_components(unique, ref_template=REF_TEMPLATE)
        self._by_type = dict(zip(unique, schemas, strict=True))

    def __getitem__(self, kind: object) -> dict[str, Any]:
        return dict(self._by_type[kind])


def _content_types(spec: object) -> list[object]:
    if spec is None:
        return []
    return [spec.schema if isinstance(spec, Media) else spec]


def _path_kinds(path: str, operation: Operation) -> dict[str, object]:
    return {name: operation.path.get(name, PATH_PARAMS.get(name, str)) for name in _PATH_PARAM.findall(path)}


def _types_of(declared: Declared) -> list[object]:
    operation = declared.operation
    found: list[object] = [ErrorBody, *_content_types(operation.body)]
    for spec in operation.responses.values():
        found += _content_types(spec)
    found += _path_kinds(declared.path, operation).values()
    return [*found, *operation.query.values(), *operation.headers.values()]


def _content(spec: object, schemas: _Schemas) -> dict[str, Any]:
    if isinstance(spec, Media):
        return {spec.media_type: {"schema": schemas[spec.schema]}}
    return {"application/json": {"schema": schemas[spec]}}


def _response(status: int | str, spec: object, schemas: _Schemas) -> dict[str, Any]:
    phrase = "Any other status" if status == "default" else http.HTTPStatus(int(status)).phrase
    described: dict[str, Any] = {"description": phrase}
    if spec is not None:
        described["content"] = _content(spec, schemas)
    return described


def error_statuses(path: str, operation: Operation) -> list[int]:
    usual: set[int] = set(operation.errors)
    if operation.auth not in (Auth.PUBLIC, Auth.SESSION_OPTIONAL):
        usual |= {401, 403}
    if _PATH_PARAM.search(path):
        usual.add(404)
    if operation.body is not None:
        usual |= {400, 413, 415, 422}
    return sorted(usual - {int(s) for s in operation.responses if s != "default"})


def _responses(path: str, operation: Operation, schemas: _Schemas) -> dict[str, Any]:
    declared = sorted(operation.responses.items(), key=lambda item: str(item[0]))
    out = {str(status): _response(status, spec, schemas) for status, spec in declared}
    for status in error_statuses(path, operation):
        out[str(status)] = _response(status, ErrorBody, schemas)
    out.setdefault("default", _response("default", ErrorBody, schemas))
    return out


def _parameters(path: str, operation: Operation, schemas: _Schemas) -> list[dict[str, Any]]:
    kinds = _path_kinds(path, operation)
    params = [{"name": n, "in": "path", "required": True, "schema": schemas[k]} for n, k in kinds.items()]
    for place, fields in (("query", operation.query), ("header", operation.headers)):
        params += [{"name": n, "in": place, "required": False, "schema": schemas[k]} for n, k in fields.items()]
    return params


def _security(auth: Auth) -> list[dict[str, list[str]]]:
    return [{scheme: []} if scheme else {} for scheme in auth.value]


def _operation_object(declared: Declared, schemas: _Schemas) -> dict[str, Any]:
    operation, handler = declared.operation, declared.handler
    module = handler.__module__.rsplit(".", 1)[-1]
    described: dict[str, Any] = {
        "operationId": f"{module}.{handler.__name__}",
        "summary": operation.summary,
        "tags": [module],
        "security": _security(operation.auth),
        "parameters": _parameters(declared.path, operation, schemas),
        "responses": _responses(declared.path, operation, schemas),
    }
    description = inspect.getdoc(handler)
    if description:
        described["description"] = description
    if operation.body is not None:
        described["requestBody"] = {"required": operation.body_required, "content": _content(operation.body, schemas)}
    return described


def build_document(router: web.UrlDispatcher) -> dict[str, Any]:
    """The whole document for the routes `router` holds (undeclared ones are left out)."""
    routes = declared_routes(router)
    schemas = _Schemas([kind for declared in routes for kind in _types_of(declared)])
    paths: dict[str, dict[str, Any]] = {}
    for declared in routes:
        paths.setdefault(declared.path, {})[declared.method.lower()] = _operation_object(declared, schemas)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": TITLE,
            "version": API_VERSION,
            "description": "Runtime secrets for workflows: encrypted, write-only, and in the engine the moment "
            'they are saved. Every error is {"error": {"code", "message"}}.',
        },
        "paths": paths,
        "components": {"schemas": schemas.components, "securitySchemes": SECURITY_SCHEMES},
    }
