"""Backend Secrets rows: metadata reads, and the put/delete operations run by the writer.

A put may keep the value it replaces for a while (`previous_valid_for_s`): a webhook signing key's
overlap window. The old ciphertext stays in the row with its expiry; the engine snapshot carries it
only until then, and only verify_webhook uses it. Expired ones are cleared by `purge_expired_previous`.
"""

import time
from collections.abc import Callable
from typing import Any, Final

import aiosqlite
import msgspec

from contract.engine import EngineDelta, EngineSecret
from contract.events import SecretDeleted, SecretPut
from service.clock import now_rfc3339, rfc3339
from service.errors import NotFound, PreconditionFailed
from service.fingerprints import Fingerprinter
from service.store.db import fetch_all, fetch_one
from service.store.writer import Operation, Transaction

STORE = "secret"  # the store name sealed into each value's binding
PREVIOUS_MAX_S: Final = 7 * 86_400  # the longest overlap window a put may ask for
LAST_USED_RESOLUTION_S: Final = 1.0  # how stale `last_used_at` may be (see mark_used)


class SecretMeta(msgspec.Struct, frozen=True, kw_only=True):
    """`previous_valid_until`: while a rotation's overlap window lasts, when the previous value stops
    being accepted (by verify_webhook only); null otherwise. `used_by`: the saved workflows that
    reference the secret. `last_used_at`: when an execution last read it, to within a second (null: never)."""

    name: str
    version: int
    created_at: str
    updated_at: str
    previous_valid_until: str | None = None
    used_by: list[str] = msgspec.field(default_factory=list)
    last_used_at: str | None = None


class PutOutcome(msgspec.Struct, frozen=True, kw_only=True):
    meta: SecretMeta
    created: bool


class EngineRows(msgspec.Struct, frozen=True, kw_only=True):
    revision: int
    wrapped_key: bytes
    secrets: list[EngineSecret]


# The JSON array of the saved workflows that reference a secret, sorted; `{project}`/`{name}` name the secret.
_USED_BY: Final = (
    "SELECT json_group_array(workflow) FROM (SELECT workflow FROM workflow_refs "
    "WHERE project_id = {project} AND kind = 'secret' AND name = {name} ORDER BY workflow)"
)
_META_SELECT: Final = (
    "SELECT s.name, s.version, s.created_at, s.updated_at, s.previous_valid_until, s.last_used_at, "
    f"({_USED_BY.format(project='s.project_id', name='s.name')}) FROM secrets s"
)
_names: Final = msgspec.json.Decoder(list[str])


def _meta(row: Any, now: float) -> SecretMeta:
    until = row[4]
    return SecretMeta(
        name=row[0],
        version=int(row[1]),
        created_at=row[2],
        updated_at=row[3],
        previous_valid_until=rfc3339(until) if until is not None and until > now else None,
        used_by=_names.decode(row[6]) if row[6] else [],
        last_used_at=row[5],
    )


async def list_secrets(conn: aiosqlite.Connection, project_id: str) -> list[SecretMeta]:
    rows = await fetch_all(conn, f"{_META_SELECT} WHERE s.project_id = ? ORDER BY s.name", (project_id,))
    now = time.time()
    return [_meta(row, now) for row in rows]


async def get_secret(conn: aiosqlite.Connection, project_id: str, name: str) -> SecretMeta:
    row = await fetch_one(conn, f"{_META_SELECT} WHERE s.project_id = ? AND s.name = ?", (project_id, name))
    if row is None:
        raise secret_not_found(name)
    return _meta(row, time.time())


async def engine_rows(conn: aiosqlite.Connection, project_id: str) -> EngineRows | None:
    """The project's key, revision and ciphertexts, read in one statement: one consistent snapshot.
    A previous value comes along only while its overlap window lasts."""
    rows = await fetch_all(
        conn,
        "SELECT p.revision, p.wrapped_key, s.name, s.version, s.ciphertext, s.previous_ciphertext, "
        "s.previous_valid_until FROM projects p "
        "LEFT JOIN secrets s ON s.project_id = p.id WHERE p.id = ? ORDER BY s.name",
        (project_id,),
    )
    if not rows:
        return None
    now = time.time()
    secrets = [engine_secret(r, now) for r in rows if r[2] is not None]
    return EngineRows(revision=int(rows[0][0]), wrapped_key=bytes(rows[0][1]), secrets=secrets)


def engine_secret(row: Any, now: float) -> EngineSecret:
    name, version, ciphertext, previous, until = row[2], int(row[3]), bytes(row[4]).decode(), row[5], row[6]
    if previous is None or until is None or until <= now:
        return EngineSecret(name=name, version=version, ciphertext=ciphertext)
    return EngineSecret(
        name=name,
        version=version,
        ciphertext=ciphertext,
        previous_ciphertext=bytes(previous).decode(),
        previous_valid_until=float(until),
    )


def _written(name: str, version: int, ciphertext: bytes, previous: bytes | None, until: float | None) -> EngineSecret:
    """The row a put wrote, as the engine endpoint will show it (`engine_secret`)."""
    if previous is None or until is None:
        return EngineSecret(name=name, version=version, ciphertext=ciphertext.decode())
    return EngineSecret(
        name=name,
        version=version,
        ciphertext=ciphertext.decode(),
        previous_ciphertext=previous.decode(),
        previous_valid_until=until,
    )


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
    previous_valid_for_s: int | None = None,
) -> Operation[PutOutcome]:
    """`sealed` was encrypted outside the writer under `sealed_with`; resealed only if the key changed.

    `fingerprint` gives the value's keyed fingerprint under the key the row is sealed with (service.fingerprints).
    `previous_valid_for_s`: keep the value this put replaces for that many seconds (an overlap window);
    without it, a put ends any window still open. Creating a secret has nothing to keep.
    """

    async def operation(tx: Transaction) -> PutOutcome:
        row = await fetch_one(
            tx.conn,
            "SELECT p.wrapped_key, s.version, s.created_at, s.ciphertext, s.last_used_at, "
            f"({_USED_BY.format(project='p.id', name='?')}) FROM projects p "
            "LEFT JOIN secrets s ON s.project_id = p.id AND s.name = ? WHERE p.id = ?",
            (name, name, project_id),
        )
        if row is None:
            raise NotFound("no such project", code="project_not_found")
        wrapped_key, current, created_at = bytes(row[0]), row[1], row[2]
        check_if_match(if_match, current, name)
        ciphertext = sealed if wrapped_key == sealed_with else reseal(wrapped_key)
        value_fingerprint = fingerprint(wrapped_key) if fingerprint is not None else None
        previous: bytes | None = None
        until: float | None = None
        if current is not None and previous_valid_for_s:
            previous, until = bytes(row[3]), time.time() + previous_valid_for_s
        now = now_rfc3339()
        meta = SecretMeta(
            name=name,
            version=(current or 0) + 1,
            created_at=created_at or now,
            updated_at=now,
            previous_valid_until=None if until is None else rfc3339(until),
            used_by=_names.decode(row[5]) if row[5] else [],
            last_used_at=row[4],
        )
        await tx.conn.execute(
            "INSERT INTO secrets (project_id, name, version, ciphertext, created_at, updated_at, fingerprint, "
            "previous_ciphertext, previous_valid_until) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (project_id, name) DO UPDATE SET "
            "version = excluded.version, ciphertext = excluded.ciphertext, updated_at = excluded.updated_at, "
            "fingerprint = excluded.fingerprint, previous_ciphertext = excluded.previous_ciphertext, "
            "previous_valid_until = excluded.previous_valid_until",
            (project_id, name, meta.version, ciphertext, meta.created_at, now, value_fingerprint, previous, until),
        )
        revision = await tx.bump_revision(project_id)
        written = _written(name, meta.version, ciphertext, previous, until)
        await tx.emit(
            SecretPut(seq=0, project=project_id, revision=revision, name=name, version=meta.version),
            delta=EngineDelta(project=project_id, revision=revision, secret=written),
        )
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


def purge_expired_previous(now: float) -> Operation[int]:
    """Clear previous values whose overlap window has ended (no event: the engine already stopped
    getting them); returns how many."""

    async def operation(tx: Transaction) -> int:
        cursor = await tx.conn.execute(
            "UPDATE secrets SET previous_ciphertext = NULL, previous_valid_until = NULL "
            "WHERE previous_valid_until IS NOT NULL AND previous_valid_until <= ?",
            (now,),
        )
        return int(cursor.rowcount)

    return operation


async def mark_used(tx: Transaction, project_id: str, names: set[str], at: float) -> None:
    """Stamp `last_used_at` on secrets an execution read (bookkeeping: no revision, no event).
    A stamp younger than LAST_USED_RESOLUTION_S stays: under load every execution reads the same
    secrets, and rewriting their rows each time costs the writer more than the stamp is worth."""
    await tx.conn.executemany(
        "UPDATE secrets SET last_used_at = ? WHERE project_id = ? AND name = ? "
        "AND (last_used_at IS NULL OR last_used_at < ?)",
        [(rfc3339(at), project_id, name, rfc3339(at - LAST_USED_RESOLUTION_S)) for name in sorted(names)],
    )
