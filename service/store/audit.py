"""The audit log: who changed what, which execution read what, and what was refused. Never a value.

Entries are written by the writer inside the transaction of what they record, in one statement per
batch (`Transaction.record`, and `Transaction.emit`, which records every change event it emits,
attributed to the request that submitted the operation: service.actor). So a change and its
entry commit or roll back together, and a change made by any store is logged without that store
knowing about the log.

An entry is written only while its project exists: an entry for a project deleted earlier in the
same batch, or for a project that never existed (a refused request for a made-up id), is dropped.
The table is append-only (triggers in migration 5); deleting a project removes its log with it.
"""

from collections.abc import Iterable
from typing import Any, Final, Literal

import aiosqlite
import msgspec

from contract.events import ChangeEvent, ProjectDeleted
from service.actor import SYSTEM, Actor
from service.clock import now_rfc3339
from service.store.db import fetch_all

Action = Literal["change", "read", "refused"]


class _Subject(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What an entry is about; each kind of entry fills the fields it knows."""

    store: str | None = None
    op: str | None = None
    name: str | None = None
    version: int | None = None
    execution_id: str | None = None
    node_id: str | None = None
    status: int | None = None
    code: str | None = None
    suppressed: int | None = None


class NewEntry(_Subject, frozen=True, kw_only=True):
    """An entry waiting for its batch to commit."""

    project: str
    action: Action
    actor: Actor


class AuditEntry(_Subject, frozen=True, kw_only=True, omit_defaults=True):
    """One entry as the API shows it. `action`: change (store, op, name, version), read (an execution's
    node read a secret or credential: execution_id, node_id, store, name) or refused (a request on this
    project's routes was refused: status, code, op = the HTTP method, and what of the target is known).
    `suppressed`: refusals not written just before this one (the per-project rate bound)."""

    seq: int
    at: str
    action: Action
    actor: Actor


class AuditFilter(msgspec.Struct, frozen=True, kw_only=True):
    """`actor`: a kind (`dashboard`), a token id, or both as `kind:id`. `since`/`until`: RFC 3339 bounds,
    already normalised to the stored form (service.clock)."""

    limit: int = 100
    before: int | None = None
    name: str | None = None
    actor: str | None = None
    since: str | None = None
    until: str | None = None


_COLUMNS: Final = (
    "project_id, at, action, actor_kind, actor_id, store, op, name, version, execution_id, node_id, status, code, "
    "suppressed"
)
_INSERT: Final = (
    f"INSERT INTO audit_log ({_COLUMNS}) SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? "
    "WHERE EXISTS (SELECT 1 FROM projects WHERE id = ?)"
)


def entry_for_event(event: ChangeEvent, actor: Actor | None) -> NewEntry | None:
    """The change an event announces (`secret.put` -> store secret, op put); none for a deleted project,
    whose log goes with it."""
    if isinstance(event, ProjectDeleted):
        return None
    store, _, op = str(type(event).__struct_config__.tag).partition(".")
    return NewEntry(
        project=event.project,
        action="change",
        actor=actor or SYSTEM,
        store=store,
        op=op,
        name=getattr(event, "name", None),
        version=getattr(event, "version", None),
    )


async def write_entries(conn: aiosqlite.Connection, entries: Iterable[NewEntry]) -> None:
    at = now_rfc3339()
    await conn.executemany(_INSERT, [_row(entry, at) for entry in entries])


def _row(e: NewEntry, at: str) -> tuple[Any, ...]:
    return (
        e.project,
        at,
        e.action,
        e.actor.kind,
        e.actor.id,
        e.store,
        e.op,
        e.name,
        e.version,
        e.execution_id,
        e.node_id,
        e.status,
        e.code,
        e.suppressed,
        e.project,
    )


async def list_entries(conn: aiosqlite.Connection, project_id: str, query: AuditFilter) -> list[AuditEntry]:
    """Newest first; `before` is a `seq` (the previous page's `next_before`)."""
    sql = f"SELECT seq, {_COLUMNS} FROM audit_log WHERE project_id = ?"
    params: list[Any] = [project_id]
    for condition, value in (
        ("seq < ?", query.before),
        ("name = ?", query.name),
        ("at >= ?", query.since),
        ("at < ?", query.until),
    ):
        if value is not None:
            sql += f" AND {condition}"
            params.append(value)
    if query.actor is not None:
        sql += " AND (actor_kind = ? OR actor_id = ? OR actor_kind || ':' || coalesce(actor_id, '') = ?)"
        params += [query.actor] * 3
    sql += " ORDER BY seq DESC LIMIT ?"
    params.append(query.limit)
    return [_entry(row) for row in await fetch_all(conn, sql, params)]


def _entry(row: Any) -> AuditEntry:
    return AuditEntry(
        seq=int(row[0]),
        at=row[2],
        action=row[3],
        actor=Actor(row[4], row[5]),
        store=row[6],
        op=row[7],
        name=row[8],
        version=row[9],
        execution_id=row[10],
        node_id=row[11],
        status=row[12],
        code=row[13],
        suppressed=row[14],
    )
