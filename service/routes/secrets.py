"""Backend Secrets for the dashboard: metadata, overwrite and delete. A value never comes back."""

from typing import Annotated

import msgspec
from aiohttp import web

from contract.sealing import seal
from service.bodies import read_json
from service.fingerprints import fingerprinter
from service.openapi import IF_MATCH, STORE_NAME, Auth, describe
from service.responses import json_response
from service.routes.common import dashboard_project, etag, written
from service.state import KEYRING, READER, WRITER
from service.store import secrets as store
from service.store.projects import project_wrapped_key
from service.validation import if_match_version, valid_name, valid_value

routes = web.RouteTableDef()


class PutSecret(msgspec.Struct, forbid_unknown_fields=True):
    """`previous_valid_for_s`: when rotating a webhook signing key, the value being replaced is still
    accepted by verify_webhook (and only there) for this many seconds (1 to 7 days). Without it an
    overwrite ends any window still open; creating a secret has no previous value to keep."""

    value: str
    previous_valid_for_s: Annotated[int, msgspec.Meta(gt=0, le=store.PREVIOUS_MAX_S)] | None = None

    def __repr__(self) -> str:
        return "PutSecret(value=<hidden>)"


class SecretList(msgspec.Struct, frozen=True, kw_only=True):
    secrets: list[store.SecretMeta]


@routes.get("/api/projects/{project}/secrets")
@describe("List the project's secrets: names and versions, no value", auth=Auth.DASHBOARD, responses={200: SecretList})
async def list_secrets(request: web.Request) -> web.Response:
    project_id = await dashboard_project(request)
    return json_response(SecretList(secrets=await store.list_secrets(request.app[READER], project_id)))


@routes.get("/api/projects/{project}/secrets/{name}")
@describe(
    "A secret's metadata (never its value)",
    auth=Auth.DASHBOARD,
    responses={200: store.SecretMeta},
    errors=(422,),
    path={"name": STORE_NAME},
)
async def get_secret(request: web.Request) -> web.Response:
    project_id = await dashboard_project(request)
    meta = await store.get_secret(request.app[READER], project_id, valid_name(request.match_info["name"]))
    return json_response(meta, headers=etag(meta.version))


@routes.put("/api/projects/{project}/secrets/{name}")
@describe(
    "Create (201) or overwrite (200) a secret; answers its metadata only. With `previous_valid_for_s` the "
    "replaced value stays valid for verify_webhook that long (a signing key's overlap window)",
    auth=Auth.DASHBOARD,
    body=PutSecret,
    responses={201: store.SecretMeta, 200: store.SecretMeta},
    errors=(412,),
    headers={"If-Match": IF_MATCH},
    path={"name": STORE_NAME},
)
async def put_secret(request: web.Request) -> web.Response:
    project_id = await dashboard_project(request)
    name = valid_name(request.match_info["name"])
    if_match = if_match_version(request)
    body = await read_json(request, PutSecret)
    value = valid_value(body.value)
    keyring = request.app[KEYRING]

    def seal_under(wrapped_key: bytes) -> bytes:
        return seal(keyring.project_fernet(wrapped_key), project_id, store.STORE, name, value)

    wrapped = await project_wrapped_key(request.app[READER], project_id)
    operation = store.put_secret(
        project_id,
        name,
        seal_under(wrapped),
        wrapped,
        seal_under,
        if_match,
        fingerprinter(keyring, value),
        body.previous_valid_for_s,
    )
    outcome = await request.app[WRITER].submit(operation)
    return written(outcome.meta, outcome.meta.version, created=outcome.created)


@routes.delete("/api/projects/{project}/secrets/{name}")
@describe(
    "Delete a secret",
    auth=Auth.DASHBOARD,
    responses={204: None},
    errors=(400, 412, 422),
    headers={"If-Match": IF_MATCH},
    path={"name": STORE_NAME},
)
async def delete_secret(request: web.Request) -> web.Response:
    project_id = await dashboard_project(request)
    name = valid_name(request.match_info["name"])
    await request.app[WRITER].submit(store.delete_secret(project_id, name, if_match_version(request)))
    return web.Response(status=204)
