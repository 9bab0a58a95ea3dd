"""Dashboard sessions: a signed-in browser's cookie, bound to one project and one dashboard token.

Only the SHA-256 of a session id is stored. A session ends when it expires, when it is signed
out, or when its token or project is gone (the lookup joins the tokens table).
"""

from typing import Any

import aiosqlite
import msgspec

from service.clock import now_rfc3339
from service.store.writer import Operation, Transaction


class SessionRow(msgspec.Struct, frozen=True, kw_only=True):
    project_id: str
    token_id: str
    csrf_token: str
    expires_at: float


async def find_session(conn: aiosqlite.Connection, id_hash: bytes, now: float) -> SessionRow | None:
    async with conn.execute(
        "SELECT s.project_id, s.token_id, s.csrf_token, s.expires_at FROM sessions s "
        "JOIN tokens t ON t.token_id = s.token_id AND t.project_id = s.project_id AND t.scope = 'dashboard' "
        "WHERE s.id_hash = ? AND s.expires_at > ?",
        (id_hash, now),
    ) as cursor:
        row: Any = await cursor.fetchone()
    if row is None:
        return None
    return SessionRow(project_id=row[0], token_id=row[1], csrf_token=row[2], expires_at=float(row[3]))


def create_session(id_hash: bytes, row: SessionRow, now: float) -> Operation[None]:
    """Store a new session, and forget the ones that have expired."""

    async def operation(tx: Transaction) -> None:
        await tx.conn.execute("DELETE FROM sessions WHERE expires_at <= ?", (now,))
        await tx.conn.execute(
            "INSERT INTO sessions (id_hash, project_id, token_id, csrf_token, created_at, expires_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (id_hash, row.project_id, row.token_id, row.csrf_token, now_rfc3339(), row.expires_at),
        )

    return operation


def delete_session(id_hash: bytes) -> Operation[None]:
    async def operation(tx: Transaction) -> None:
        await tx.conn.execute("DELETE FROM sessions WHERE id_hash = ?", (id_hash,))

    return operation
