"""Projects and their tokens."""

import aiosqlite
import msgspec

from contract.events import ProjectCreated
from service.clock import now_rfc3339
from service.errors import Conflict, NotFound
from service.store.db import fetch_one
from service.store.writer import Operation, Transaction


class ProjectRow(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    created_at: str


class TokenRow(msgspec.Struct, frozen=True, kw_only=True):
    token_id: str
    project_id: str
    scope: str


class NewToken(msgspec.Struct, frozen=True, kw_only=True):
    hash: bytes
    token_id: str
    scope: str


def create_project(project_id: str, name: str, wrapped_key: bytes, tokens: list[NewToken]) -> Operation[ProjectRow]:
    async def operation(tx: Transaction) -> ProjectRow:
        async with tx.conn.execute("SELECT 1 FROM projects WHERE id = ?", (project_id,)) as cursor:
            if await cursor.fetchone():
                raise Conflict(f"a project with id {project_id!r} already exists", code="project_exists")
        row = ProjectRow(id=project_id, name=name, created_at=now_rfc3339())
        await tx.conn.execute(
            "INSERT INTO projects (id, name, created_at, wrapped_key) VALUES (?, ?, ?, ?)",
            (row.id, row.name, row.created_at, wrapped_key),
        )
        await tx.conn.executemany(
            "INSERT INTO tokens (hash, token_id, project_id, scope, created_at) VALUES (?, ?, ?, ?, ?)",
            [(t.hash, t.token_id, project_id, t.scope, row.created_at) for t in tokens],
        )
        await tx.emit(ProjectCreated(seq=0, project=project_id, revision=0))
        return row

    return operation


async def find_token(conn: aiosqlite.Connection, token_hash: bytes) -> TokenRow | None:
    async with conn.execute("SELECT token_id, project_id, scope FROM tokens WHERE hash = ?", (token_hash,)) as cursor:
        row = await cursor.fetchone()
    return TokenRow(token_id=row[0], project_id=row[1], scope=row[2]) if row else None


async def project_wrapped_key(conn: aiosqlite.Connection, project_id: str) -> bytes:
    """The project's key as stored (wrapped); the caller unwraps it through the KeyRing."""
    row = await fetch_one(conn, "SELECT wrapped_key FROM projects WHERE id = ?", (project_id,))
    if row is None:
        raise NotFound("no such project", code="project_not_found")
    return bytes(row[0])
