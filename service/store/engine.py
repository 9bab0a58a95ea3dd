"""What the engine endpoint reads: the project's key and revision, its secrets and its credentials,
in ONE statement, so the answer is one consistent snapshot however fast changes commit."""

import time

import aiosqlite

from service.store.credentials import EngineCredentialRows
from service.store.db import fetch_all
from service.store.secrets import EngineRows, engine_secret

_SNAPSHOT_SQL = (
    "SELECT 0, p.revision, p.wrapped_key, s.name, s.version, s.ciphertext, s.previous_ciphertext, "
    "s.previous_valid_until, NULL FROM projects p LEFT JOIN secrets s ON s.project_id = p.id WHERE p.id = ? "
    "UNION ALL "
    "SELECT 1, p.revision, p.wrapped_key, c.name, c.version, c.ciphertext, NULL, NULL, c.type "
    "FROM projects p JOIN credentials c ON c.project_id = p.id WHERE p.id = ? "
    "ORDER BY 1, 4"
)


async def engine_snapshot_rows(
    conn: aiosqlite.Connection, project_id: str
) -> tuple[EngineRows, EngineCredentialRows] | None:
    rows = await fetch_all(conn, _SNAPSHOT_SQL, (project_id, project_id))
    if not rows:
        return None
    revision, wrapped_key, now = int(rows[0][1]), bytes(rows[0][2]), time.time()
    secrets = [engine_secret(r[1:], now) for r in rows if r[0] == 0 and r[3] is not None]
    credentials = [(r[3], r[8], int(r[4]), bytes(r[5])) for r in rows if r[0] == 1]
    return (
        EngineRows(revision=revision, wrapped_key=wrapped_key, secrets=secrets),
        EngineCredentialRows(revision=revision, wrapped_key=wrapped_key, credentials=credentials),
    )
