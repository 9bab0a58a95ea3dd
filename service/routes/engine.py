"""GET /api/engine/{p}/secrets: what a worker needs to decrypt at execution time (secrets and
credentials). Ciphertext only."""

import aiosqlite
from aiohttp import web

from contract.engine import EngineCredential, EngineSnapshot, snapshot_encoder
from service.errors import NotFound, ServiceUnavailable
from service.openapi import Auth, describe
from service.state import AUTH, KEYRING, READER
from service.store.credentials import EngineCredentialRows, engine_credentials
from service.store.secrets import EngineRows, engine_rows

routes = web.RouteTableDef()
SNAPSHOT_TRIES = 20


async def _consistent_rows(reader: aiosqlite.Connection, project_id: str) -> tuple[EngineRows, EngineCredentialRows]:
    """Secrets and credentials come from two statements; a change committed between them shows as another
    revision (or key) in the second, and both are read again, so the answer is one consistent snapshot."""
    for _ in range(SNAPSHOT_TRIES):
        rows = await engine_rows(reader, project_id)
        credentials = await engine_credentials(reader, project_id)
        if rows is None or credentials is None:
            raise NotFound("no such project", code="project_not_found")
        if (rows.revision, rows.wrapped_key) == (credentials.revision, credentials.wrapped_key):
            return rows, credentials
    raise ServiceUnavailable("the project changed during every read; try again", code="snapshot_unstable")


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
