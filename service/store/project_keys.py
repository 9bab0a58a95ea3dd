"""A project key after its creation: rotation (every value re-encrypted under a new key) and shredding.

Rotation is one writer operation: every secret (with its previous value, while its overlap window
lasts), every credential and every keyed fingerprint (service.fingerprints: they derive from the
project key) is rewritten under the new key, the new wrapped key is stored, the revision grows and
`ProjectKeyRotated` is emitted, all in one transaction. Workers drop the project's snapshot on the
event and fetch the new key with the new ciphertexts; an execution that holds the old snapshot
keeps decrypting with the old key it holds, so nothing fails mid-rotation.

To keep the writer's batch short, the work is planned first, outside the writer and off the event
loop (`plan_rotation`, from the reader's copy); inside the transaction a planned row is used only if
its ciphertext is still the one planned from, anything written in between is redone there.

Shredding (`delete_project`) runs after the project's shred key has been destroyed (service.keystore):
it overwrites the wrapped key, deletes the project and every row that names it, audit log included,
and emits `ProjectDeleted`.
"""

import time
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiosqlite
import msgspec
from cryptography.fernet import Fernet

from contract.credential_types import CREDENTIAL_TYPES, decode_fields
from contract.credential_types import STORE as CREDENTIAL_STORE
from contract.events import ProjectDeleted, ProjectKeyRotated
from contract.sealing import SealError, open_sealed, seal
from service.clock import now_rfc3339
from service.errors import Conflict, NotFound
from service.fingerprints import fingerprint, fingerprint_key
from service.keyring import KeyRing
from service.store.db import fetch_all, fetch_one
from service.store.secrets import STORE as SECRET_STORE
from service.store.writer import Operation, Transaction


class RotationOutcome(msgspec.Struct, frozen=True, kw_only=True):
    project: str
    revision: int
    rotated_at: str
    secrets: int  # values re-encrypted (a previous value counts with its secret)
    credentials: int


@dataclass(frozen=True, slots=True)
class SecretRow:
    name: str
    ciphertext: bytes
    previous: bytes | None  # only while its overlap window lasts
    previous_valid_until: float | None


@dataclass(frozen=True, slots=True)
class CredentialRow:
    name: str
    type: str
    ciphertext: bytes


@dataclass(frozen=True, slots=True)
class ProjectRows:
    wrapped_key: bytes
    secrets: list[SecretRow]
    credentials: list[CredentialRow]


@dataclass(frozen=True, slots=True)
class NewSecret:
    source: SecretRow
    ciphertext: bytes
    previous: bytes | None
    fingerprint: bytes


@dataclass(frozen=True, slots=True)
class NewCredential:
    source: CredentialRow
    ciphertext: bytes
    fingerprints: list[tuple[str, bytes]]


Planned = TypeVar("Planned", NewSecret, NewCredential)


@dataclass(slots=True)
class RotationPlan:
    new_key: bytes
    new_wrapped: bytes
    secrets: dict[str, NewSecret] = field(default_factory=dict)
    credentials: dict[str, NewCredential] = field(default_factory=dict)


async def project_rows(conn: aiosqlite.Connection, project_id: str) -> ProjectRows:
    """The project's key and sealed rows as they are now (a previous value past its window is left out)."""
    key = await fetch_one(conn, "SELECT wrapped_key FROM projects WHERE id = ?", (project_id,))
    if key is None:
        raise NotFound("no such project", code="project_not_found")
    now = time.time()
    secrets = await fetch_all(
        conn,
        "SELECT name, ciphertext, previous_ciphertext, previous_valid_until FROM secrets WHERE project_id = ?",
        (project_id,),
    )
    credentials = await fetch_all(
        conn, "SELECT name, type, ciphertext FROM credentials WHERE project_id = ?", (project_id,)
    )
    return ProjectRows(
        wrapped_key=bytes(key[0]),
        secrets=[_secret_row(row, now) for row in secrets],
        credentials=[CredentialRow(name=r[0], type=r[1], ciphertext=bytes(r[2])) for r in credentials],
    )


def _secret_row(row: Any, now: float) -> SecretRow:
    live = row[2] is not None and row[3] is not None and float(row[3]) > now
    return SecretRow(
        name=row[0],
        ciphertext=bytes(row[1]),
        previous=bytes(row[2]) if live else None,
        previous_valid_until=float(row[3]) if live else None,
    )


class _Resealer:
    """Opens under the old key and seals under the new one; errors name the record, never a value."""

    def __init__(self, project_id: str, old: Fernet, new_key: bytes) -> None:
        self._project, self._old, self._new = project_id, old, Fernet(new_key)
        self._fingerprint_key = fingerprint_key(new_key)

    def secret(self, row: SecretRow) -> NewSecret:
        value = self._open(row.ciphertext, SECRET_STORE, row.name)
        previous = None
        if row.previous is not None:
            previous = self._seal(SECRET_STORE, row.name, self._open(row.previous, SECRET_STORE, row.name))
        return NewSecret(
            source=row,
            ciphertext=self._seal(SECRET_STORE, row.name, value),
            previous=previous,
            fingerprint=fingerprint(self._fingerprint_key, value),
        )

    def credential(self, row: CredentialRow) -> NewCredential:
        plaintext = self._open(row.ciphertext, CREDENTIAL_STORE, row.name)
        kind = CREDENTIAL_TYPES.get(row.type)
        try:
            fields = decode_fields(plaintext)
        except msgspec.MsgspecError:
            raise self._blocked(CREDENTIAL_STORE, row.name, "does not hold the JSON of its fields") from None
        secret_fields = kind.secret_fields if kind is not None else ()
        return NewCredential(
            source=row,
            ciphertext=self._seal(CREDENTIAL_STORE, row.name, plaintext),
            fingerprints=[(f, fingerprint(self._fingerprint_key, fields[f])) for f in secret_fields if f in fields],
        )

    def _open(self, token: bytes, store: str, name: str) -> str:
        try:
            return open_sealed(self._old, token, self._project, store, name)
        except SealError:
            raise self._blocked(store, name, "cannot be decrypted with the project key") from None

    @staticmethod
    def _blocked(store: str, name: str, reason: str) -> Conflict:
        return Conflict(
            f"the stored value of {store} {name!r} {reason}, so the key cannot be rotated: overwrite or delete "
            "it, then rotate again",
            code="rotation_blocked",
        )

    def _seal(self, store: str, name: str, value: str) -> bytes:
        return seal(self._new, self._project, store, name, value)


def plan_rotation(keyring: KeyRing, project_id: str, rows: ProjectRows) -> RotationPlan:
    """Generate the new key and re-encrypt everything read so far (CPU work: run it in a thread)."""
    new_key = Fernet.generate_key()
    plan = RotationPlan(new_key=new_key, new_wrapped=keyring.wrap(new_key, like=rows.wrapped_key))
    resealer = _Resealer(project_id, keyring.project_fernet(rows.wrapped_key), new_key)
    plan.secrets = {row.name: resealer.secret(row) for row in rows.secrets}
    plan.credentials = {row.name: resealer.credential(row) for row in rows.credentials}
    return plan


def rotate_key(keyring: KeyRing, project_id: str, plan: RotationPlan) -> Operation[RotationOutcome]:
    async def operation(tx: Transaction) -> RotationOutcome:
        rows = await project_rows(tx.conn, project_id)
        redo = _Resealer(project_id, keyring.project_fernet(rows.wrapped_key), plan.new_key)
        secrets = [_planned(plan.secrets.get(row.name), row) or redo.secret(row) for row in rows.secrets]
        credentials = [_planned(plan.credentials.get(r.name), r) or redo.credential(r) for r in rows.credentials]
        # Everything is computed; from here on, only writes.
        prior = await _secure_delete(tx, True)
        await tx.conn.executemany(
            "UPDATE secrets SET ciphertext = ?, fingerprint = ?, previous_ciphertext = ?, previous_valid_until = ? "
            "WHERE project_id = ? AND name = ?",
            [
                (s.ciphertext, s.fingerprint, s.previous, s.source.previous_valid_until, project_id, s.source.name)
                for s in secrets
            ],
        )
        await tx.conn.executemany(
            "UPDATE credentials SET ciphertext = ? WHERE project_id = ? AND name = ?",
            [(c.ciphertext, project_id, c.source.name) for c in credentials],
        )
        await tx.conn.execute("DELETE FROM credential_fingerprints WHERE project_id = ?", (project_id,))
        await tx.conn.executemany(
            "INSERT INTO credential_fingerprints (project_id, name, field, fingerprint) VALUES (?, ?, ?, ?)",
            [(project_id, c.source.name, f, fp) for c in credentials for f, fp in c.fingerprints],
        )
        await tx.conn.execute("UPDATE projects SET wrapped_key = ? WHERE id = ?", (plan.new_wrapped, project_id))
        await _secure_delete(tx, prior)
        revision = await tx.bump_revision(project_id)
        await tx.emit(ProjectKeyRotated(seq=0, project=project_id, revision=revision))
        return RotationOutcome(
            project=project_id,
            revision=revision,
            rotated_at=now_rfc3339(),
            secrets=len(secrets),
            credentials=len(credentials),
        )

    return operation


def _planned(planned: Planned | None, row: SecretRow | CredentialRow) -> Planned | None:
    """The planned result if it was made from exactly this row (else it is redone in the transaction)."""
    return planned if planned is not None and planned.source == row else None


async def _secure_delete(tx: Transaction, on: bool | int) -> int:
    """Set SQLite's secure_delete (zero what is freed, so old key material and ciphertexts do not linger
    in the file); returns the setting it replaced."""
    prior = await fetch_one(tx.conn, "PRAGMA secure_delete")
    await tx.conn.execute(f"PRAGMA secure_delete = {int(on)}")
    return int(prior[0]) if prior else 0


async def _tables_naming_projects(conn: aiosqlite.Connection) -> list[str]:
    """Every table with a `project_id` column, so a table added later is shredded too."""
    tables = await fetch_all(conn, "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
    found = []
    for (table,) in tables:
        columns = await fetch_all(conn, "SELECT name FROM pragma_table_info(?)", (table,))
        if any(column == "project_id" for (column,) in columns):
            found.append(str(table))
    return found


def delete_project(project_id: str) -> Operation[int]:
    """Overwrite the wrapped key, then delete the project and everything that names it (secure_delete:
    SQLite zeroes what it frees). Returns the revision announced by `ProjectDeleted`."""

    async def operation(tx: Transaction) -> int:
        row = await fetch_one(tx.conn, "SELECT revision, length(wrapped_key) FROM projects WHERE id = ?", (project_id,))
        if row is None:
            raise NotFound("no such project", code="project_not_found")
        prior = await _secure_delete(tx, True)
        await tx.conn.execute("UPDATE projects SET wrapped_key = randomblob(?) WHERE id = ?", (int(row[1]), project_id))
        await tx.conn.execute("DELETE FROM projects WHERE id = ?", (project_id,))  # cascades to most tables
        for table in await _tables_naming_projects(tx.conn):
            await tx.conn.execute(f'DELETE FROM "{table}" WHERE project_id = ?', (project_id,))
        await _secure_delete(tx, prior)
        revision = int(row[0]) + 1
        await tx.emit(ProjectDeleted(seq=0, project=project_id, revision=revision))
        return revision

    return operation
