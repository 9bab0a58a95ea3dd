"""POST /hooks/{p}/{workflow}: the public webhook entry point.

No token: verifying the caller is the workflow's job (a `verify_webhook` node). The request is
handed to a worker as the execution's input and the caller waits for the result:
- the workflow's `respond` node set a reply -> that status, headers and body;
- it succeeded without one -> 200 with the last node's output as JSON;
- it failed -> the error's `http_status` (else 500) with {"error": {code, message, execution_id}};
- no result within `hook_timeout_s` -> 504 `execution_timeout`.
An unknown project, an unknown workflow and a workflow without a webhook trigger all get the
same 404, so the entry point says nothing about what exists.
"""

import base64
from typing import Any, Final

import msgspec
from aiohttp import web

from contract.executions import ExecutionInput, HttpReply
from contract.names import is_valid_project_id
from service.dispatch import ExecutionTimeout, Outcome
from service.errors import NotFound, PayloadTooLarge
from service.openapi import WORKFLOW_NAME, Auth, Media, describe
from service.responses import json_response
from service.state import DISPATCH, WORKFLOWS
from service.workflow_validation import WORKFLOW_NAME_MAX, WORKFLOW_NAME_RE

routes = web.RouteTableDef()

EXECUTION_HEADER: Final = "X-Execution-Id"
# Set by aiohttp from the body, or meaningless on a rebuilt response.
_DROPPED_HEADERS: Final = frozenset(
    {"content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "content-encoding"}
)
_NO_BODY_STATUSES: Final = frozenset({204, 304})


class ExecutionErrorDetail(msgspec.Struct, frozen=True, kw_only=True):
    code: str
    message: str
    execution_id: str


class ExecutionErrorBody(msgspec.Struct, frozen=True):
    """An execution that failed or timed out: the error body, naming the execution."""

    error: ExecutionErrorDetail


def execution_error(status: int, code: str, message: str, execution_id: str) -> web.Response:
    body = ExecutionErrorBody(ExecutionErrorDetail(code=code, message=message, execution_id=execution_id))
    return json_response(body, status=status, headers={EXECUTION_HEADER: execution_id})


def timeout_response(exc: ExecutionTimeout) -> web.Response:
    return execution_error(exc.status, exc.error_code, exc.message, exc.execution_id)


def _no_such_hook() -> NotFound:
    return NotFound("no such webhook", code="workflow_not_found")


async def _raw_body(request: web.Request) -> bytes:
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(f"the body is larger than {request.client_max_size} bytes") from None


def _json_or_none(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return None


def execution_input(request: web.Request, raw: bytes) -> ExecutionInput:
    """What `${ input... }` reads: lower-case header names (repeated headers joined with ", ")."""
    headers = {name.lower(): ", ".join(request.headers.getall(name)) for name in request.headers}
    return ExecutionInput(
        method=request.method,
        headers=headers,
        query={name: request.query[name] for name in request.query},
        body=_json_or_none(raw),
        raw_body=base64.b64encode(raw).decode(),
    )


def _safe_header(name: str, value: str) -> bool:
    text = name + value
    return name.lower() not in _DROPPED_HEADERS and "\r" not in text and "\n" not in text and bool(name.strip())


def http_reply(reply: HttpReply, execution_id: str) -> web.Response:
    """The `respond` node's reply; a non-string body goes out as JSON."""
    status = reply.status if 100 <= reply.status <= 599 else 500
    headers = {name: value for name, value in reply.headers.items() if _safe_header(name, value)}
    content_type = next((headers.pop(name) for name in list(headers) if name.lower() == "content-type"), None)
    if reply.body is None or status in _NO_BODY_STATUSES:
        payload = b""
    elif isinstance(reply.body, str):
        payload = reply.body.encode("utf-8")
        content_type = content_type or "text/plain; charset=utf-8"
    else:
        payload = msgspec.json.encode(reply.body)
        content_type = content_type or "application/json"
    response = web.Response(body=payload, status=status, headers=headers)
    if content_type is not None and payload:
        response.headers["Content-Type"] = content_type
    response.headers.setdefault(EXECUTION_HEADER, execution_id)
    return response


def hook_response(execution_id: str, outcome: Outcome) -> web.Response:
    if outcome.response is not None:
        return http_reply(outcome.response, execution_id)
    if outcome.status == "succeeded":
        output = outcome.output
        if output is None and outcome.nodes:
            output = outcome.nodes[-1].output
        return web.Response(
            body=msgspec.json.encode(output),
            content_type="application/json",
            headers={EXECUTION_HEADER: execution_id},
        )
    error = outcome.error
    code = error.code if error else "execution_failed"
    message = error.message if error else f"the execution ended {outcome.status}"
    status = error.http_status if error and error.http_status and 400 <= error.http_status <= 599 else 500
    return execution_error(status, code, message, execution_id)


@routes.post("/hooks/{project}/{workflow}")
@describe(
    "Run a workflow with a webhook trigger; answers what its respond node says, else the last output",
    auth=Auth.PUBLIC,
    body=Media("*/*", Any),
    body_required=False,
    responses={504: ExecutionErrorBody, "default": Media("*/*", Any)},
    errors=(413,),
    path={"workflow": WORKFLOW_NAME},
)
async def run_hook(request: web.Request) -> web.Response:
    project_id, name = request.match_info["project"], request.match_info["workflow"]
    if not is_valid_project_id(project_id) or len(name) > WORKFLOW_NAME_MAX or not WORKFLOW_NAME_RE.fullmatch(name):
        raise _no_such_hook()
    workflow = await request.app[WORKFLOWS].get(project_id, name)
    if workflow is None or not workflow.webhook:
        raise _no_such_hook()
    data = execution_input(request, await _raw_body(request))
    try:
        execution_id, outcome = await request.app[DISPATCH].answer(project_id, workflow, data)
    except ExecutionTimeout as exc:
        return timeout_response(exc)
    return hook_response(execution_id, outcome)
