"""Frontend (Build) vars for the dashboard: public values, readable, and a .env export for the build."""

import msgspec
from aiohttp import web

from service import dotenv_file
from service.bodies import read_json
from service.fingerprints import fingerprinter
from service.guardrail import check_not_private_key
from service.openapi import IF_MATCH, STORE_NAME, Auth, Media, describe
from service.responses import json_response
from service.routes.common import dashboard_project, etag, written
from service.state import KEYRING, READER, WRITER
from service.store import frontend_vars as store
from service.validation import if_match_version, valid_name, valid_value

routes = web.RouteTableDef()


class PutVar(msgspec.Struct, forbid_unknown_fields=True):
    value: str


@routes.get("/api/projects/{project}/frontend-vars")
@describe(
    "List the project's Frontend (Build) vars, with their values",
    auth=Auth.DASHBOARD,
    responses={200: store.FrontendVarList},
)
async def list_vars(request: web.Request) -> web.Response:
    project_id = await dashboard_project(request)
    return json_response(store.FrontendVarList(frontend_vars=await store.list_vars(request.app[READER], project_id)))


@routes.get("/api/projects/{project}/frontend-vars.env")
@describe(
    "The Frontend (Build) vars as a dotenv file for the build",
    auth=Auth.DASHBOARD,
    responses={200: Media("text/plain")},
)
async def export_dotenv(request: web.Request) -> web.Response:
    project_id = await dashboard_project(request)
    variables = await store.list_vars(request.app[READER], project_id)
    header = f"Frontend (Build) vars of project {project_id}: public values, safe to bake into a browser bundle."
    return web.Response(
        text=dotenv_file.render(((v.name, v.value) for v in variables), header=header),
        content_type="text/plain",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{project_id}.env"', "Cache-Control": "no-store"},
    )


@routes.get("/api/projects/{project}/frontend-vars/{name}")
@describe(
    "A Frontend (Build) var, with its value",
    auth=Auth.DASHBOARD,
    responses={200: store.FrontendVar},
    errors=(422,),
    path={"name": STORE_NAME},
)
async def get_var(request: web.Request) -> web.Response:
    project_id = await dashboard_project(request)
    var = await store.get_var(request.app[READER], project_id, valid_name(request.match_info["name"]))
    return json_response(var, headers=etag(var.version))


@routes.put("/api/projects/{project}/frontend-vars/{name}")
@describe(
    "Create (201) or overwrite (200) a Frontend (Build) var; 422 looks_like_secret for a private key",
    auth=Auth.DASHBOARD,
    body=PutVar,
    responses={201: store.FrontendVar, 200: store.FrontendVar},
    errors=(412,),
    headers={"If-Match": IF_MATCH},
    path={"name": STORE_NAME},
)
async def put_var(request: web.Request) -> web.Response:
    project_id = await dashboard_project(request)
    name = valid_name(request.match_info["name"])
    if_match = if_match_version(request)
    value = valid_value((await read_json(request, PutVar)).value)
    check_not_private_key(value)
    operation = store.put_var(project_id, name, value, fingerprinter(request.app[KEYRING], value), if_match)
    outcome = await request.app[WRITER].submit(operation)
    return written(outcome.var, outcome.var.version, created=outcome.created)


@routes.delete("/api/projects/{project}/frontend-vars/{name}")
@describe(
    "Delete a Frontend (Build) var",
    auth=Auth.DASHBOARD,
    responses={204: None},
    errors=(400, 412, 422),
    headers={"If-Match": IF_MATCH},
    path={"name": STORE_NAME},
)
async def delete_var(request: web.Request) -> web.Response:
    project_id = await dashboard_project(request)
    name = valid_name(request.match_info["name"])
    await request.app[WRITER].submit(store.delete_var(project_id, name, if_match_version(request)))
    return web.Response(status=204)
