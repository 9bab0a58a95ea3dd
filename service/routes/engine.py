"""GET /api/engine/{p}/secrets: what a worker needs to decrypt at execution time. Ciphertext only."""

from aiohttp import web

from contract.engine import EngineSecret, EngineSnapshot, snapshot_encoder
from service.errors import NotFound
from service.openapi import Auth, describe
from service.state import AUTH, KEYRING, READER
from service.store.secrets import engine_rows

routes = web.RouteTableDef()


@routes.get("/api/engine/{project}/secrets")
@describe(
    "The project's secrets for the engine: names, versions, revision and ciphertexts (never plaintext)",
    auth=Auth.ENGINE,
    responses={200: EngineSnapshot},
)
async def engine_secrets(request: web.Request) -> web.Response:
    project_id = request.match_info["project"]
    await request.app[AUTH].require_engine(request, project_id)
    rows = await engine_rows(request.app[READER], project_id)
    if rows is None:
        raise NotFound("no such project", code="project_not_found")
    snapshot = EngineSnapshot(
        project=project_id,
        revision=rows.revision,
        data_key=request.app[KEYRING].unwrap(rows.wrapped_key).decode(),
        secrets=[EngineSecret(name=n, version=v, ciphertext=c.decode()) for n, v, c in rows.secrets],
    )
    return web.Response(
        body=snapshot_encoder.encode(snapshot),
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )
