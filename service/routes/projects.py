"""POST /api/projects: the admin creates a project and receives its two tokens, once."""

import msgspec
from aiohttp import web

from service.auth import Scope, mint_token
from service.bodies import read_json
from service.openapi import Auth, describe
from service.responses import json_response
from service.state import AUTH, KEYRING, WRITER
from service.store.projects import create_project
from service.validation import project_id_from_name, valid_project_id, valid_project_name

routes = web.RouteTableDef()


class CreateProject(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    id: str | None = None


class CreatedProject(msgspec.Struct, kw_only=True):
    id: str
    name: str
    created_at: str
    dashboard_token: str
    engine_token: str


@routes.post("/api/projects")
@describe(
    "Create a project and mint its dashboard and engine tokens (shown once)",
    auth=Auth.ADMIN,
    body=CreateProject,
    responses={201: CreatedProject},
    errors=(409,),
)
async def post_project(request: web.Request) -> web.Response:
    await request.app[AUTH].require(request, Scope.ADMIN)
    body = await read_json(request, CreateProject)
    name = valid_project_name(body.name)
    project_id = valid_project_id(body.id) if body.id is not None else project_id_from_name(name)
    dashboard_token, dashboard_row = mint_token(Scope.DASHBOARD)
    engine_token, engine_row = mint_token(Scope.ENGINE)
    _, wrapped_key = request.app[KEYRING].new_project_key()
    row = await request.app[WRITER].submit(create_project(project_id, name, wrapped_key, [dashboard_row, engine_row]))
    created = CreatedProject(
        id=row.id,
        name=row.name,
        created_at=row.created_at,
        dashboard_token=dashboard_token,
        engine_token=engine_token,
    )
    return json_response(created, status=201, headers={"Cache-Control": "no-store"})
