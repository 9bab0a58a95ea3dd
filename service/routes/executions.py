"""Executions for the dashboard: run a workflow with a JSON input, read one, list them newest first.

`POST /api/projects/{p}/workflows/{name}/executions` takes the input `body` as its JSON body
(empty: null) and answers 201 with the finished execution record, whatever the workflow's
outcome; `?wait=false` answers 202 with the queued record at once. 504 `execution_timeout`
when no result comes within `hook_timeout_s`.
"""

import base64
from typing import Annotated, Any, Final

import msgspec
from aiohttp import web

from contract.executions import ExecutionInput
from service.dispatch import ExecutionTimeout
from service.errors import InvalidField, MalformedBody, PayloadTooLarge, UnsupportedMediaType
from service.openapi import WORKFLOW_NAME, Auth, describe
from service.responses import json_response
from service.routes.common import dashboard_project
from service.routes.hooks import ExecutionErrorBody, timeout_response
from service.state import DISPATCH, READER, WORKFLOWS
from service.store import executions as store
from service.store.workflows import workflow_not_found
from service.workflow_validation import valid_workflow_name

routes = web.RouteTableDef()

DEFAULT_PAGE: Final = 50
MAX_PAGE: Final = 200
ID_MAX: Final = 64


class ExecutionPage(msgspec.Struct, frozen=True, kw_only=True):
    executions: list[store.ExecutionSummary]
    next_before: str | None  # pass as `before` for the next (older) page; null on the last page


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_PAGE
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_PAGE:  # not "²"
        raise InvalidField(f"limit must be a whole number from 1 to {MAX_PAGE}", code="invalid_limit")
    return int(raw)


def _before(raw: str | None) -> str | None:
    if raw is not None and (not raw or len(raw) > ID_MAX):
        raise InvalidField("before must be an execution id", code="invalid_cursor")
    return raw


@routes.get("/api/projects/{project}/executions")
@describe(
    "The project's executions, newest first, a page at a time",
    auth=Auth.DASHBOARD,
    responses={200: ExecutionPage},
    errors=(422,),
    query={
        "limit": Annotated[int, msgspec.Meta(ge=1, le=MAX_PAGE)],
        "before": Annotated[str, msgspec.Meta(min_length=1, max_length=ID_MAX)],
        "workflow": WORKFLOW_NAME,
    },
)
async def list_executions(request: web.Request) -> web.Response:
    project_id = await dashboard_project(request)
    limit = _limit(request.query.get("limit"))
    workflow = request.query.get("workflow")
    page = await store.list_executions(
        request.app[READER],
        project_id,
        limit=limit,
        before=_before(request.query.get("before")),
        workflow=None if workflow is None else valid_workflow_name(workflow),
    )
    next_before = page[-1].id if len(page) == limit else None
    return json_response(ExecutionPage(executions=page, next_before=next_before))


@routes.get("/api/projects/{project}/executions/{id}")
@describe(
    "One execution: status, timings, nodes and output, masked",
    auth=Auth.DASHBOARD,
    responses={200: store.ExecutionRecord},
)
async def get_execution(request: web.Request) -> web.Response:
    project_id = await dashboard_project(request)
    execution_id = request.match_info["id"]
    if len(execution_id) > ID_MAX:
        raise store.execution_not_found(execution_id[:ID_MAX])
    await request.app[DISPATCH].settled(project_id, execution_id)  # its row may be on its way
    return json_response(await store.get_execution(request.app[READER], project_id, execution_id))


async def _input_body(request: web.Request) -> tuple[Any, bytes]:
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(f"the body is larger than {request.client_max_size} bytes") from None
    if not raw:
        return None, raw
    if request.content_type != "application/json":
        raise UnsupportedMediaType("send the input as JSON with 'Content-Type: application/json'")
    try:
        return msgspec.json.decode(raw), raw
    except msgspec.DecodeError:
        raise MalformedBody("the body is not valid JSON") from None


@routes.post("/api/projects/{project}/workflows/{name}/executions")
@describe(
    "Run a workflow with a JSON input: 201 with the finished record, or 202 at once with ?wait=false",
    auth=Auth.DASHBOARD,
    body=Any,
    body_required=False,
    responses={201: store.ExecutionRecord, 202: store.ExecutionRecord, 504: ExecutionErrorBody},
    errors=(422,),
    query={"wait": bool},
    path={"name": WORKFLOW_NAME},
)
async def run_workflow(request: web.Request) -> web.Response:
    project_id = await dashboard_project(request)
    name = valid_workflow_name(request.match_info["name"])
    workflow = await request.app[WORKFLOWS].get(project_id, name)
    if workflow is None:
        raise workflow_not_found(name)
    wait = request.query.get("wait", "true").lower() not in ("false", "0", "no")
    body, raw = await _input_body(request)
    data = ExecutionInput(
        method="POST",
        headers={"content-type": "application/json"} if raw else {},
        body=body,
        raw_body=base64.b64encode(raw).decode(),
    )
    try:
        record = await request.app[DISPATCH].execute(project_id, workflow, data, wait=wait)
    except ExecutionTimeout as exc:
        return timeout_response(exc)
    return json_response(record, status=201 if wait else 202, headers={"Location": _location(record)})


def _location(record: store.ExecutionRecord) -> str:
    return f"/api/projects/{record.project}/executions/{record.id}"
