"""GET /api/engine/{p}/secrets: what a worker needs to decrypt at execution time (secrets and
credentials). Ciphertext only."""

import aiosqlite
from aiohttp import web

from contract.engine import EngineCredential, EngineSnapshot, snapshot_encoder
from service.errors import NotFound
from service.openapi import Auth, describe
from service.state import AUTH, KEYRING, READER
from service.store.credentials import EngineCredentialRows
from service.store.engine import engine_snapshot_rows
from service.store.secrets import EngineRows

routes = web.RouteTableDef()


async def _consistent_rows(reader: aiosqlite.Connection, project_id: str) -> tuple[EngineRows, EngineCredentialRows]:
    found = await engine_snapshot_rows(reader, project_id)
    if found is None:
        raise NotFound("no such project", code="project_not_found")
    return found


@routes.get("/api/engine/{project}/secrets")
@describe(
    "The project's secrets and credentials for the engine: names, versions, revision, ciphertexts (no plaintext)",
    auth=Auth.ENGINE,
    responses={200: EngineSnapshot},
)
async def engine_secrets(request: web.Request) -> web.Response:
    project_id = request.match_info["project"]
    await request.app[AUTH].require_engine(request, project_id)
    rows, credentials = await _consistent_rows(request.app[READER], project_id)
    snapshot = EngineSnapshot(
        project=project_id,
        revision=rows.revision,
        data_key=request.app[KEYRING].unwrap(rows.wrapped_key).decode(),
        secrets=rows.secrets,
        credentials=[
            EngineCredential(name=n, type=t, version=v, ciphertext=c.decode()) for n, t, v, c in credentials.credentials
        ],
    )
    return web.Response(
        body=snapshot_encoder.encode(snapshot),
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )
