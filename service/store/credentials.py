"""Credentials rows: typed, sealed like secrets, with keyed fingerprints of their secret fields.

A credential is one ciphertext (store "credential", the JSON of its fields) and, in
`credential_fingerprints`, one keyed fingerprint per secret field, so the frontend guardrail can
refuse a public copy of any of them without decrypting (service.fingerprints).
"""

from collections.abc import Callable

import aiosqlite
import msgspec

from contract.events import CredentialDeleted, CredentialPut
from service.clock import now_rfc3339
from service.errors import NotFound, PreconditionFailed
from service.store.db import fetch_all, fetch_one
from service.store.writer import Operation, Transaction


class CredentialMeta(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    type: str
    version: int
    created_at: str
    updated_at: str


class PutOutcome(msgspec.Struct, frozen=True, kw_only=True):
    meta: CredentialMeta
    created: bool


class EngineCredentialRows(msgspec.Struct, frozen=True, kw_only=True):
    revision: int
    wrapped_key: bytes
    credentials: list[tuple[str, str, int, bytes]]  # name, type, version, ciphertext


Sealer = Callable[[bytes], bytes]  # wrapped project key -> the fields sealed under it
FieldFingerprints = Callable[[bytes], list[tuple[str, bytes]]]  # wrapped key -> (field, fingerprint) pairs

_META_COLUMNS = "name, type, version, created_at, updated_at"


def _meta(row: tuple[str, str, int, str, str]) -> CredentialMeta:
    return CredentialMeta(name=row[0], type=row[1], version=int(row[2]), created_at=row[3], updated_at=row[4])


async def list_credentials(conn: aiosqlite.Connection, project_id: str) -> list[CredentialMeta]:
    rows = await fetch_all(
        conn, f"SELECT {_META_COLUMNS} FROM credentials WHERE project_id = ? ORDER BY name", (project_id,)
    )
    return [_meta(row) for row in rows]


async def get_credential(conn: aiosqlite.Connection, project_id: str, name: str) -> CredentialMeta:
    row = await fetch_one(
        conn, f"SELECT {_META_COLUMNS} FROM credentials WHERE project_id = ? AND name = ?", (project_id, name)
    )
    if row is None:
        raise credential_not_found(name)
    return _meta(row)


async def engine_credentials(conn: aiosqlite.Connection, project_id: str) -> EngineCredentialRows | None:
    """The project's key, revision and credential ciphertexts, in one statement."""
    rows = await fetch_all(
        conn,
        "SELECT p.revision, p.wrapped_key, c.name, c.type, c.version, c.ciphertext FROM projects p "
        "LEFT JOIN credentials c ON c.project_id = p.id WHERE p.id = ? ORDER BY c.name",
        (project_id,),
    )
    if not rows:
        return None
    found = [(r[2], r[3], int(r[4]), bytes(r[5])) for r in rows if r[2] is not None]
    return EngineCredentialRows(revision=int(rows[0][0]), wrapped_key=bytes(rows[0][1]), credentials=found)


def credential_not_found(name: str) -> NotFound:
    return NotFound(f"no credential named {name!r} in this project", code="credential_not_found")


def check_if_match(if_match: int | None, current: int | None, name: str) -> None:
    if if_match is None:
        return
    if current is None:
        raise PreconditionFailed(f"credential {name!r} does not exist, so If-Match cannot match")
    if current != if_match:
        raise PreconditionFailed(f"credential {name!r} is at version {current}, not {if_match}")


def put_credential(
    project_id: str,
    name: str,
    kind: str,
    sealed: bytes,
    sealed_with: bytes,
    reseal: Sealer,
    fingerprints: FieldFingerprints,
    if_match: int | None,
) -> Operation[PutOutcome]:
    """`sealed` was encrypted outside the writer under `sealed_with`; resealed only if the key changed.

    `fingerprints` gives the secret fields' keyed fingerprints under the key the row is sealed with.
    """

    async def operation(tx: Transaction) -> PutOutcome:
        row = await fetch_one(
            tx.conn,
            "SELECT p.wrapped_key, c.version, c.created_at FROM projects p "
            "LEFT JOIN credentials c ON c.project_id = p.id AND c.name = ? WHERE p.id = ?",
            (name, project_id),
        )
        if row is None:
            raise NotFound("no such project", code="project_not_found")
        wrapped_key, current, created_at = bytes(row[0]), row[1], row[2]
        check_if_match(if_match, current, name)
        ciphertext = sealed if wrapped_key == sealed_with else reseal(wrapped_key)
        field_fingerprints = fingerprints(wrapped_key)
        now = now_rfc3339()
        meta = CredentialMeta(
            name=name, type=kind, version=(current or 0) + 1, created_at=created_at or now, updated_at=now
        )
        await tx.conn.execute(
            "INSERT INTO credentials (project_id, name, type, version, ciphertext, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (project_id, name) DO UPDATE SET "
            "type = excluded.type, version = excluded.version, ciphertext = excluded.ciphertext, "
            "updated_at = excluded.updated_at",
            (project_id, name, kind, meta.version, ciphertext, meta.created_at, meta.updated_at),
        )
        if current is not None:
            await tx.conn.execute(
                "DELETE FROM credential_fingerprints WHERE project_id = ? AND name = ?", (project_id, name)
            )
        if field_fingerprints:
            await tx.conn.executemany(
                "INSERT INTO credential_fingerprints (project_id, name, field, fingerprint) VALUES (?, ?, ?, ?)",
                [(project_id, name, field, fp) for field, fp in field_fingerprints],
            )
        revision = await tx.bump_revision(project_id)
        await tx.emit(CredentialPut(seq=0, project=project_id, revision=revision, name=name, version=meta.version))
        return PutOutcome(meta=meta, created=current is None)

    return operation


def delete_credential(project_id: str, name: str, if_match: int | None) -> Operation[None]:
    """Deleting the row deletes its fingerprints with it (ON DELETE CASCADE)."""

    async def operation(tx: Transaction) -> None:
        row = await fetch_one(
            tx.conn, "SELECT version FROM credentials WHERE project_id = ? AND name = ?", (project_id, name)
        )
        if row is None:
            raise credential_not_found(name)
        check_if_match(if_match, int(row[0]), name)
        await tx.conn.execute("DELETE FROM credentials WHERE project_id = ? AND name = ?", (project_id, name))
        revision = await tx.bump_revision(project_id)
        await tx.emit(CredentialDeleted(seq=0, project=project_id, revision=revision, name=name, version=int(row[0])))

    return operation
