"""Frontend (Build) vars rows: public values, read back freely, put and deleted through the writer.

A put is refused when the value is an exact copy of a private value of the same project. That is
found by comparing keyed fingerprints stored beside the private values at write time, never by
decrypting them: `PRIVATE_COPIES` lists, per private store, how to look a fingerprint up.
"""

from typing import Any

import aiosqlite
import msgspec

from contract.events import FrontendVarDeleted, FrontendVarPut
from service.clock import now_rfc3339
from service.errors import NotFound, PreconditionFailed
from service.fingerprints import Fingerprinter
from service.guardrail import looks_like_secret
from service.store.writer import Operation, Transaction


class FrontendVar(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    value: str
    version: int
    created_at: str
    updated_at: str


class FrontendVarList(msgspec.Struct, frozen=True, kw_only=True):
    frontend_vars: list[FrontendVar]


class PutOutcome(msgspec.Struct, frozen=True, kw_only=True):
    var: FrontendVar
    created: bool


# (what the copied value is, a query taking (project_id, fingerprint) and returning a name).
# A private store that keeps fingerprints the same way adds its line here.
PRIVATE_COPIES: list[tuple[str, str]] = [
    ("Backend Secret", "SELECT name FROM secrets WHERE project_id = ? AND fingerprint = ? ORDER BY name LIMIT 1"),
    (
        "Credential",
        "SELECT name FROM credential_fingerprints WHERE project_id = ? AND fingerprint = ? ORDER BY name LIMIT 1",
    ),
]

_COLUMNS = "name, value, version, created_at, updated_at"


def _row(row: Any) -> FrontendVar:
    return FrontendVar(name=row[0], value=row[1], version=int(row[2]), created_at=row[3], updated_at=row[4])


async def list_vars(conn: aiosqlite.Connection, project_id: str) -> list[FrontendVar]:
    async with conn.execute(
        f"SELECT {_COLUMNS} FROM frontend_vars WHERE project_id = ? ORDER BY name", (project_id,)
    ) as cursor:
        return [_row(row) for row in await cursor.fetchall()]


async def get_var(conn: aiosqlite.Connection, project_id: str, name: str) -> FrontendVar:
    async with conn.execute(
        f"SELECT {_COLUMNS} FROM frontend_vars WHERE project_id = ? AND name = ?", (project_id, name)
    ) as cursor:
        row = await cursor.fetchone()
    if row is None:
        raise var_not_found(name)
    return _row(row)


def var_not_found(name: str) -> NotFound:
    return NotFound(f"no frontend var named {name!r} in this project", code="frontend_var_not_found")


def check_if_match(if_match: int | None, current: int | None, name: str) -> None:
    if if_match is None:
        return
    if current is None:
        raise PreconditionFailed(f"frontend var {name!r} does not exist, so If-Match cannot match")
    if current != if_match:
        raise PreconditionFailed(f"frontend var {name!r} is at version {current}, not {if_match}")


async def _refuse_private_copy(tx: Transaction, project_id: str, fingerprint: bytes) -> None:
    for what, query in PRIVATE_COPIES:
        async with tx.conn.execute(query, (project_id, fingerprint)) as cursor:
            row = await cursor.fetchone()
        if row is not None:
            raise looks_like_secret(f"an exact copy of the {what} {row[0]!r}")


def put_var(
    project_id: str, name: str, value: str, fingerprint: Fingerprinter, if_match: int | None
) -> Operation[PutOutcome]:
    """`fingerprint` fingerprints `value` under the project key read inside the transaction."""

    async def operation(tx: Transaction) -> PutOutcome:
        async with tx.conn.execute(
            "SELECT p.wrapped_key, v.version, v.created_at FROM projects p "
            "LEFT JOIN frontend_vars v ON v.project_id = p.id AND v.name = ? WHERE p.id = ?",
            (name, project_id),
        ) as cursor:
            row = await cursor.fetchone()
        if row is None:
            raise NotFound("no such project", code="project_not_found")
        wrapped_key, current, created_at = bytes(row[0]), row[1], row[2]
        check_if_match(if_match, current, name)
        await _refuse_private_copy(tx, project_id, fingerprint(wrapped_key))
        now = now_rfc3339()
        var = FrontendVar(
            name=name, value=value, version=(current or 0) + 1, created_at=created_at or now, updated_at=now
        )
        await tx.conn.execute(
            "INSERT INTO frontend_vars (project_id, name, value, version, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (project_id, name) DO UPDATE SET "
            "value = excluded.value, version = excluded.version, updated_at = excluded.updated_at",
            (project_id, name, var.value, var.version, var.created_at, var.updated_at),
        )
        revision = await tx.bump_revision(project_id)
        await tx.emit(FrontendVarPut(seq=0, project=project_id, revision=revision, name=name, version=var.version))
        return PutOutcome(var=var, created=current is None)

    return operation


def delete_var(project_id: str, name: str, if_match: int | None) -> Operation[None]:
    async def operation(tx: Transaction) -> None:
        async with tx.conn.execute(
            "SELECT version FROM frontend_vars WHERE project_id = ? AND name = ?", (project_id, name)
        ) as cursor:
            row = await cursor.fetchone()
        if row is None:
            raise var_not_found(name)
        check_if_match(if_match, int(row[0]), name)
        await tx.conn.execute("DELETE FROM frontend_vars WHERE project_id = ? AND name = ?", (project_id, name))
        revision = await tx.bump_revision(project_id)
        await tx.emit(FrontendVarDeleted(seq=0, project=project_id, revision=revision, name=name, version=int(row[0])))

    return operation
