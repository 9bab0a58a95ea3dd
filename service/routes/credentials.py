"""Credentials for the dashboard: typed, encrypted, write-only. Type and metadata come back, never a field value.

GET    /api/credential-types                    public: the type table (contract.credential_types)
GET    /api/projects/{p}/credentials            dashboard: metadata of each credential
GET    /api/projects/{p}/credentials/{name}     dashboard: one credential's metadata
PUT    /api/projects/{p}/credentials/{name}     dashboard: {"type", "fields"} -> 201 created | 200 overwritten
DELETE /api/projects/{p}/credentials/{name}     dashboard: 204 | 404
"""

from typing import Any, Final

import msgspec
from aiohttp import web

from contract.credential_types import (
    CREDENTIAL_TYPES,
    STORE,
    CredentialFieldsError,
    CredentialType,
    check_fields,
    credential_type,
    encode_fields,
)
from contract.sealing import seal
from service.bodies import read_json
from service.errors import InvalidField
from service.fingerprints import fingerprinter
from service.openapi import IF_MATCH, STORE_NAME, Auth, describe
from service.responses import json_response
from service.routes.common import dashboard_project, etag, written
from service.state import KEYRING, READER, WRITER
from service.store import credentials as store
from service.store.projects import project_wrapped_key
from service.validation import if_match_version, valid_name

routes = web.RouteTableDef()


class PutCredential(msgspec.Struct, forbid_unknown_fields=True):
    """`fields`: every field of the type, each a non-empty string (see GET /api/credential-types)."""

    type: str
    fields: dict[str, Any]  # checked against the type (contract.credential_types.check_fields)

    def __repr__(self) -> str:
        return f"PutCredential(type={self.type!r}, fields=<hidden>)"


class CredentialList(msgspec.Struct, frozen=True, kw_only=True):
    credentials: list[store.CredentialMeta]


class CredentialTypeList(msgspec.Struct, frozen=True, kw_only=True):
    credential_types: list[CredentialType]


_TYPES_BODY: Final = msgspec.json.encode(CredentialTypeList(credential_types=list(CREDENTIAL_TYPES.values())))


def _valid_credential(body: PutCredential) -> tuple[CredentialType, dict[str, str]]:
    try:
        kind = credential_type(body.type)
        return kind, check_fields(kind, body.fields)
    except CredentialFieldsError as exc:
        raise InvalidField(exc.message, code=exc.code) from None


@routes.get("/api/credential-types")
@describe(
    "The credential types: each one's fields, their validation, and how the engine authenticates with it",
    auth=Auth.PUBLIC,
    responses={200: CredentialTypeList},
)
async def list_credential_types(request: web.Request) -> web.Response:
    """Public, like any product documentation: the table is the same for every project and holds no data.

    `auth` says which header an `http_request` node with `"credential": NAME` gets: `bearer` sends
    `Authorization: Bearer <the value of its field>`, `basic` sends
    `Authorization: Basic base64(<username_field>:<password_field>)`.
    """
    return web.Response(body=_TYPES_BODY, content_type="application/json", headers={"Cache-Control": "no-cache"})


@routes.get("/api/projects/{project}/credentials")
@describe(
    "List the project's credentials: names, types and versions, never a field value",
    auth=Auth.DASHBOARD,
    responses={200: CredentialList},
)
async def list_credentials(request: web.Request) -> web.Response:
    project_id = await dashboard_project(request)
    return json_response(CredentialList(credentials=await store.list_credentials(request.app[READER], project_id)))


@routes.get("/api/projects/{project}/credentials/{name}")
@describe(
    "A credential's type and metadata (never a field value)",
    auth=Auth.DASHBOARD,
    responses={200: store.CredentialMeta},
    errors=(422,),
    path={"name": STORE_NAME},
)
async def get_credential(request: web.Request) -> web.Response:
    project_id = await dashboard_project(request)
    meta = await store.get_credential(request.app[READER], project_id, valid_name(request.match_info["name"]))
    return json_response(meta, headers=etag(meta.version))


@routes.put("/api/projects/{project}/credentials/{name}")
@describe(
    "Create (201) or overwrite (200) a typed credential; answers its metadata only",
    auth=Auth.DASHBOARD,
    body=PutCredential,
    responses={201: store.CredentialMeta, 200: store.CredentialMeta},
    errors=(412,),
    headers={"If-Match": IF_MATCH},
    path={"name": STORE_NAME},
)
async def put_credential(request: web.Request) -> web.Response:
    """422 `unknown_credential_type`, `missing_field`, `unknown_field`, `invalid_field_value` or
    `value_too_large`: the message names the field (`fields.<name>: ...`), never its value."""
    project_id = await dashboard_project(request)
    name = valid_name(request.match_info["name"])
    if_match = if_match_version(request)
    body = await read_json(request, PutCredential)
    kind, fields = _valid_credential(body)
    plaintext = encode_fields(kind, fields)
    keyring = request.app[KEYRING]
    field_fingerprinters = [(field, fingerprinter(keyring, fields[field])) for field in kind.secret_fields]

    def seal_under(wrapped_key: bytes) -> bytes:
        return seal(keyring.project_fernet(wrapped_key), project_id, STORE, name, plaintext)

    def fingerprints_under(wrapped_key: bytes) -> list[tuple[str, bytes]]:
        return [(field, under(wrapped_key)) for field, under in field_fingerprinters]

    wrapped = await project_wrapped_key(request.app[READER], project_id)
    operation = store.put_credential(
        project_id, name, kind.type, seal_under(wrapped), wrapped, seal_under, fingerprints_under, if_match
    )
    outcome = await request.app[WRITER].submit(operation)
    return written(outcome.meta, outcome.meta.version, created=outcome.created)


@routes.delete("/api/projects/{project}/credentials/{name}")
@describe(
    "Delete a credential",
    auth=Auth.DASHBOARD,
    responses={204: None},
    errors=(400, 412, 422),
    headers={"If-Match": IF_MATCH},
    path={"name": STORE_NAME},
)
async def delete_credential(request: web.Request) -> web.Response:
    project_id = await dashboard_project(request)
    name = valid_name(request.match_info["name"])
    await request.app[WRITER].submit(store.delete_credential(project_id, name, if_match_version(request)))
    return web.Response(status=204)
