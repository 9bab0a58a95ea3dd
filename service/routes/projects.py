"""Projects: creation (admin: the two tokens, shown once), key rotation, and deletion by crypto-shredding.

POST   /api/projects                    admin: create
POST   /api/projects/{p}/rotate-key     admin or the project's dashboard token: a new project key
DELETE /api/projects/{p}                admin only: the project key is destroyed first, then every row

Deleting is the admin's alone: it cannot be undone, and no backup brings the values back (that is
the point of shredding), so a dashboard token, which a browser session also carries, cannot do it.
"""

import asyncio
import logging
import sqlite3
from pathlib import Path

import msgspec
from aiohttp import web

from service.auth import Scope, mint_token
from service.bodies import read_json
from service.fingerprints import fingerprint_key
from service.keyring import KeyRing, shred_id_of
from service.openapi import Auth, describe
from service.responses import json_response
from service.state import AUTH, KEYRING, READER, SETTINGS, WRITER
from service.store import project_keys
from service.store.projects import create_project, project_wrapped_key
from service.validation import project_id_from_name, valid_project_id, valid_project_name

routes = web.RouteTableDef()
log = logging.getLogger("service.projects")


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
    keyring = request.app[KEYRING]
    _, wrapped_key = await asyncio.to_thread(keyring.new_project_key)  # writes and fsyncs its shred key
    try:
        row = await request.app[WRITER].submit(
            create_project(project_id, name, wrapped_key, [dashboard_row, engine_row])
        )
    except BaseException:
        await asyncio.to_thread(_destroy_shred_key, keyring, wrapped_key)  # the project was not created
        raise
    created = CreatedProject(
        id=row.id,
        name=row.name,
        created_at=row.created_at,
        dashboard_token=dashboard_token,
        engine_token=engine_token,
    )
    return json_response(created, status=201, headers={"Cache-Control": "no-store"})


@routes.post("/api/projects/{project}/rotate-key")
@describe(
    "Rotate the project key: every secret and credential re-encrypted under a new key in one transaction",
    auth=Auth.MANAGER,
    responses={200: project_keys.RotationOutcome},
    errors=(409,),
)
async def rotate_key(request: web.Request) -> web.Response:
    """The admin token or the project's dashboard token. Values, versions and fingerprints stay what
    they were (fingerprints are recomputed under the new key); the revision grows and a
    `project.key_rotate` event tells workers to fetch the new key. 409 `rotation_blocked` names a
    stored value that does not decrypt (overwrite or delete it, then rotate again)."""
    project_id = request.match_info["project"]
    await request.app[AUTH].require_manager(request, project_id)
    keyring = request.app[KEYRING]
    rows = await project_keys.project_rows(request.app[READER], project_id)
    plan = await asyncio.to_thread(project_keys.plan_rotation, keyring, project_id, rows)
    outcome = await request.app[WRITER].submit(project_keys.rotate_key(keyring, project_id, plan))
    log.info("project %s: key rotated", project_id, extra={"project": project_id, "revision": outcome.revision})
    return json_response(outcome)


@routes.delete("/api/projects/{project}")
@describe(
    "Delete a project for good: its key is destroyed first (crypto-shredding), then all its data and tokens",
    auth=Auth.ADMIN,
    responses={204: None},
)
async def delete_project(request: web.Request) -> web.Response:
    """Admin only. The project's shred key is overwritten and unlinked from the keystore before any
    row is touched, so from that moment no copy of the database, backups included, can yield one of
    its values with the master keys. Then its wrapped key is overwritten, every row naming the project
    (secrets, credentials, vars, workflows, executions, tokens, sessions, its audit log) is deleted,
    and a `project.delete` event makes workers drop what they hold. A retry after a failure finishes
    the job."""
    await request.app[AUTH].require(request, Scope.ADMIN)
    project_id = request.match_info["project"]
    keyring = request.app[KEYRING]
    wrapped = await project_wrapped_key(request.app[READER], project_id)
    if not await asyncio.to_thread(_destroy_shred_key, keyring, wrapped):
        log.warning(
            "project %s had no shred key (created before shred keys, never re-wrapped): copies of the database "
            "taken before this delete still hold its key under the master keys",
            project_id,
            extra={"project": project_id},
        )
    revision = await request.app[WRITER].submit(project_keys.delete_project(project_id))
    request.app[AUTH].forget_project(project_id)
    keyring.forget()
    fingerprint_key.cache_clear()
    settings = request.app[SETTINGS]
    await asyncio.to_thread(_truncate_wal, settings.db_path, settings.sqlite_busy_timeout_ms)
    log.info("project %s deleted, its key shredded", project_id, extra={"project": project_id, "revision": revision})
    return web.Response(status=204)


def _destroy_shred_key(keyring: KeyRing, wrapped: bytes) -> bool:
    """True if the project had a shred key (now destroyed, or already gone after an earlier try)."""
    shred_id = shred_id_of(wrapped)
    if shred_id is None or keyring.keystore is None:
        return False
    keyring.keystore.destroy(shred_id)
    return True


def _truncate_wal(db_path: Path, busy_timeout_ms: int) -> None:
    """Copy the WAL into the database and empty it, so the old pages it held (the wrapped key before it
    was overwritten) leave the WAL file now rather than whenever it is next reused."""
    conn = sqlite3.connect(db_path, timeout=busy_timeout_ms / 1000)
    try:
        busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy and busy[0]:
            log.warning("the WAL could not be truncated after a project delete (readers busy); it will be reused")
    finally:
        conn.close()
