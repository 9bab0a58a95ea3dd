"""Workflows for the dashboard: save (validated), read, list and delete.

A saved workflow may reference secrets that are not set yet: it is saved, and the response's
`warnings` lists the missing names. Everything else invalid is refused with a 422 that names
the node and the field.
"""

import msgspec
from aiohttp import web

from contract.workflows import Node, Trigger, Workflow
from service.bodies import read_json
from service.openapi import IF_MATCH, WORKFLOW_NAME, Auth, describe
from service.responses import json_response
from service.routes.common import dashboard_project, etag, written
from service.state import READER, WRITER
from service.store import workflows as store
from service.store.secrets import list_secrets
from service.validation import if_match_version
from service.workflow_validation import decode_workflow, referenced_secrets, valid_workflow_name

routes = web.RouteTableDef()


class WorkflowOut(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    version: int
    created_at: str
    updated_at: str
    trigger: Trigger
    nodes: list[Node]


class SavedWorkflow(WorkflowOut, frozen=True, kw_only=True):
    warnings: list[str]  # names of referenced secrets that are not set (yet)


class WorkflowList(msgspec.Struct, frozen=True, kw_only=True):
    workflows: list[store.WorkflowMeta]


def _out(stored: store.StoredWorkflow) -> WorkflowOut:
    workflow = store.decode_definition(stored)
    meta = stored.meta
    return WorkflowOut(
        name=meta.name,
        version=meta.version,
        created_at=meta.created_at,
        updated_at=meta.updated_at,
        trigger=workflow.trigger,
        nodes=workflow.nodes,
    )


@routes.get("/api/projects/{project}/workflows")
@describe("List the project's workflows", auth=Auth.DASHBOARD, responses={200: WorkflowList})
async def list_workflows(request: web.Request) -> web.Response:
    project_id = await dashboard_project(request)
    return json_response(WorkflowList(workflows=await store.list_workflows(request.app[READER], project_id)))


@routes.get("/api/projects/{project}/workflows/{name}")
@describe(
    "A saved workflow",
    auth=Auth.DASHBOARD,
    responses={200: WorkflowOut},
    errors=(422,),
    path={"name": WORKFLOW_NAME},
)
async def get_workflow(request: web.Request) -> web.Response:
    project_id = await dashboard_project(request)
    name = valid_workflow_name(request.match_info["name"])
    stored = await store.get_workflow(request.app[READER], project_id, name)
    return json_response(_out(stored), headers=etag(stored.meta.version))


@routes.put("/api/projects/{project}/workflows/{name}")
@describe(
    "Save (201 created, 200 overwritten) a workflow, validated; `warnings` names referenced secrets not set yet",
    auth=Auth.DASHBOARD,
    body=Workflow,
    responses={201: SavedWorkflow, 200: SavedWorkflow},
    errors=(412,),
    headers={"If-Match": IF_MATCH},
    path={"name": WORKFLOW_NAME},
)
async def put_workflow(request: web.Request) -> web.Response:
    project_id = await dashboard_project(request)
    name = valid_workflow_name(request.match_info["name"])
    if_match = if_match_version(request)
    workflow = decode_workflow(bytes(await read_json(request, msgspec.Raw)))
    outcome = await request.app[WRITER].submit(
        store.put_workflow(project_id, name, msgspec.json.encode(workflow), if_match)
    )
    existing = {meta.name for meta in await list_secrets(request.app[READER], project_id)}
    meta = outcome.meta
    saved = SavedWorkflow(
        name=meta.name,
        version=meta.version,
        created_at=meta.created_at,
        updated_at=meta.updated_at,
        trigger=workflow.trigger,
        nodes=workflow.nodes,
        warnings=sorted(referenced_secrets(workflow) - existing),
    )
    return written(saved, meta.version, created=outcome.created)


@routes.delete("/api/projects/{project}/workflows/{name}")
@describe(
    "Delete a workflow",
    auth=Auth.DASHBOARD,
    responses={204: None},
    errors=(400, 412, 422),
    headers={"If-Match": IF_MATCH},
    path={"name": WORKFLOW_NAME},
)
async def delete_workflow(request: web.Request) -> web.Response:
    project_id = await dashboard_project(request)
    name = valid_workflow_name(request.match_info["name"])
    await request.app[WRITER].submit(store.delete_workflow(project_id, name, if_match_version(request)))
    return web.Response(status=204)
