"""Backend Secrets rows: metadata reads, and the put/delete operations run by the writer."""

from collections.abc import Callable

import aiosqlite
import msgspec

from contract.events import SecretDeleted, SecretPut
from service.clock import now_rfc3339
from service.errors import NotFound, PreconditionFailed
from service.fingerprints import Fingerprinter
from service.store.db import fetch_all, fetch_one
from service.store.writer import Operation, Transaction

STORE = "secret"  # the store name sealed into each value's binding


class SecretMeta(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    version: int
    created_at: str
    updated_at: str


class PutOutcome(msgspec.Struct, frozen=True, kw_only=True):
    meta: SecretMeta
    created: bool


class EngineRows(msgspec.Struct, frozen=True, kw_only=True):
    revision: int
    wrapped_key: bytes
    secrets: list[tuple[str, int, bytes]]


_META_COLUMNS = "name, version, created_at, updated_at"


async def list_secrets(conn: aiosqlite.Connection, project_id: str) -> list[SecretMeta]:
    async with conn.execute(
        f"SELECT {_META_COLUMNS} FROM secrets WHERE project_id = ? ORDER BY name", (project_id,)
    ) as cursor:
        rows = await cursor.fetchall()
    return [SecretMeta(name=r[0], version=r[1], created_at=r[2], updated_at=r[3]) for r in rows]


async def get_secret(conn: aiosqlite.Connection, project_id: str, name: str) -> SecretMeta:
    async with conn.execute(
        f"SELECT {_META_COLUMNS} FROM secrets WHERE project_id = ? AND name = ?", (project_id, name)
    ) as cursor:
        row = await cursor.fetchone()
    if row is None:
        raise secret_not_found(name)
    return SecretMeta(name=row[0], version=row[1], created_at=row[2], updated_at=row[3])


async def engine_rows(conn: aiosqlite.Connection, project_id: str) -> EngineRows | None:
    """The project's key, revision and ciphertexts, read in one statement: one consistent snapshot."""
    rows = await fetch_all(
        conn,
        "SELECT p.revision, p.wrapped_key, s.name, s.version, s.ciphertext FROM projects p "
        "LEFT JOIN secrets s ON s.project_id = p.id WHERE p.id = ? ORDER BY s.name",
        (project_id,),
    )
    if not rows:
        return None
    secrets = [(r[2], int(r[3]), bytes(r[4])) for r in rows if r[2] is not None]
    return EngineRows(revision=int(rows[0][0]), wrapped_key=bytes(rows[0][1]), secrets=secrets)


def secret_not_found(name: str) -> NotFound:
    return NotFound(f"no secret named {name!r} in this project", code="secret_not_found")


def check_if_match(if_match: int | None, current: int | None, name: str) -> None:
    if if_match is None:
        return
    if current is None:
        raise PreconditionFailed(f"secret {name!r} does not exist, so If-Match cannot match")
    if current != if_match:
        raise PreconditionFailed(f"secret {name!r} is at version {current}, not {if_match}")


Sealer = Callable[[bytes], bytes]  # wrapped project key -> ciphertext sealed under it


def put_secret(
    project_id: str,
    name: str,
    sealed: bytes,
    sealed_with: bytes,
    reseal: Sealer,
    if_match: int | None,
    fingerprint: Fingerprinter | None = None,
) -> Operation[PutOutcome]:
    """`sealed` was encrypted outside the writer under `sealed_with`; resealed only if the key changed.

    `fingerprint` gives the value's keyed fingerprint under the key the row is sealed with (service.fingerprints).
    """

    async def operation(tx: Transaction) -> PutOutcome:
        row = await fetch_one(
            tx.conn,
            "SELECT p.wrapped_key, s.version, s.created_at FROM projects p "
            "LEFT JOIN secrets s ON s.project_id = p.id AND s.name = ? WHERE p.id = ?",
            (name, project_id),
        )
        if row is None:
            raise NotFound("no such project", code="project_not_found")
        wrapped_key, current, created_at = bytes(row[0]), row[1], row[2]
        check_if_match(if_match, current, name)
        ciphertext = sealed if wrapped_key == sealed_with else reseal(wrapped_key)
        value_fingerprint = fingerprint(wrapped_key) if fingerprint is not None else None
        now = now_rfc3339()
        meta = SecretMeta(name=name, version=(current or 0) + 1, created_at=created_at or now, updated_at=now)
        await tx.conn.execute(
            "INSERT INTO secrets (project_id, name, version, ciphertext, created_at, updated_at, fingerprint) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (project_id, name) DO UPDATE SET "
            "version = excluded.version, ciphertext = excluded.ciphertext, updated_at = excluded.updated_at, "
            "fingerprint = excluded.fingerprint",
            (project_id, name, meta.version, ciphertext, meta.created_at, meta.updated_at, value_fingerprint),
        )
        revision = await tx.bump_revision(project_id)
        await tx.emit(SecretPut(seq=0, project=project_id, revision=revision, name=name, version=meta.version))
        return PutOutcome(meta=meta, created=current is None)

    return operation


def delete_secret(project_id: str, name: str, if_match: int | None) -> Operation[None]:
    async def operation(tx: Transaction) -> None:
        async with tx.conn.execute(
            "SELECT version FROM secrets WHERE project_id = ? AND name = ?", (project_id, name)
        ) as cursor:
            row = await cursor.fetchone()
        if row is None:
            raise secret_not_found(name)
        check_if_match(if_match, int(row[0]), name)
        await tx.conn.execute("DELETE FROM secrets WHERE project_id = ? AND name = ?", (project_id, name))
        revision = await tx.bump_revision(project_id)
        await tx.emit(SecretDeleted(seq=0, project=project_id, revision=revision, name=name, version=int(row[0])))

    return operation
