"""Workflow rows: the saved definition (validated JSON), its version and timestamps.

Reads go through the reader connection; put and delete are operations run by the writer, each
bumping the project's revision and emitting a change event, as the secrets do.
"""

from typing import Any, Final

import aiosqlite
import msgspec

from contract.events import WorkflowDeleted, WorkflowPut
from contract.workflows import Workflow
from service.clock import now_rfc3339
from service.errors import NotFound, PreconditionFailed
from service.store.db import fetch_one
from service.store.usage import replace_refs
from service.store.writer import Operation, Transaction


class WorkflowMeta(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    version: int
    created_at: str
    updated_at: str


class StoredWorkflow(msgspec.Struct, frozen=True, kw_only=True):
    meta: WorkflowMeta
    definition: bytes  # the Workflow as JSON, normalised when it was saved


class PutOutcome(msgspec.Struct, frozen=True, kw_only=True):
    meta: WorkflowMeta
    created: bool


_META_COLUMNS = "name, version, created_at, updated_at"
_workflow_decoder: Final = msgspec.json.Decoder(Workflow)
_dict_decoder: Final = msgspec.json.Decoder(dict[str, Any])


def _meta(row: Any) -> WorkflowMeta:
    return WorkflowMeta(name=row[0], version=int(row[1]), created_at=row[2], updated_at=row[3])


def decode_definition(stored: StoredWorkflow) -> Workflow:
    return _workflow_decoder.decode(stored.definition)


def definition_dict(stored: StoredWorkflow) -> dict[str, Any]:
    """The definition as the JSON object an ExecutionRequest carries."""
    return _dict_decoder.decode(stored.definition)


def workflow_not_found(name: str) -> NotFound:
    return NotFound(f"no workflow named {name!r} in this project", code="workflow_not_found")


async def list_workflows(conn: aiosqlite.Connection, project_id: str) -> list[WorkflowMeta]:
    async with conn.execute(
        f"SELECT {_META_COLUMNS} FROM workflows WHERE project_id = ? ORDER BY name", (project_id,)
    ) as cursor:
        rows = await cursor.fetchall()
    return [_meta(row) for row in rows]


async def find_workflow(conn: aiosqlite.Connection, project_id: str, name: str) -> StoredWorkflow | None:
    row = await fetch_one(
        conn, f"SELECT {_META_COLUMNS}, definition FROM workflows WHERE project_id = ? AND name = ?", (project_id, name)
    )
    if row is None:
        return None
    return StoredWorkflow(meta=_meta(row), definition=str(row[4]).encode())


async def get_workflow(conn: aiosqlite.Connection, project_id: str, name: str) -> StoredWorkflow:
    stored = await find_workflow(conn, project_id, name)
    if stored is None:
        raise workflow_not_found(name)
    return stored


def _check_if_match(if_match: int | None, current: int | None, name: str) -> None:
    if if_match is None:
        return
    if current is None:
        raise PreconditionFailed(f"workflow {name!r} does not exist, so If-Match cannot match")
    if current != if_match:
        raise PreconditionFailed(f"workflow {name!r} is at version {current}, not {if_match}")


def put_workflow(project_id: str, name: str, definition: bytes, if_match: int | None) -> Operation[PutOutcome]:
    async def operation(tx: Transaction) -> PutOutcome:
        async with tx.conn.execute(
            "SELECT w.version, w.created_at FROM projects p "
            "LEFT JOIN workflows w ON w.project_id = p.id AND w.name = ? WHERE p.id = ?",
            (name, project_id),
        ) as cursor:
            row = await cursor.fetchone()
        if row is None:
            raise NotFound("no such project", code="project_not_found")
        current, created_at = row[0], row[1]
        _check_if_match(if_match, current, name)
        now = now_rfc3339()
        meta = WorkflowMeta(name=name, version=(current or 0) + 1, created_at=created_at or now, updated_at=now)
        await tx.conn.execute(
            "INSERT INTO workflows (project_id, name, version, definition, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (project_id, name) DO UPDATE SET "
            "version = excluded.version, definition = excluded.definition, updated_at = excluded.updated_at",
            (project_id, name, meta.version, definition.decode(), meta.created_at, meta.updated_at),
        )
        await replace_refs(tx, project_id, name, definition)  # `used_by` of the secrets it references
        revision = await tx.bump_revision(project_id)
        await tx.emit(WorkflowPut(seq=0, project=project_id, revision=revision, name=name, version=meta.version))
        return PutOutcome(meta=meta, created=current is None)

    return operation


def delete_workflow(project_id: str, name: str, if_match: int | None) -> Operation[None]:
    async def operation(tx: Transaction) -> None:
        async with tx.conn.execute(
            "SELECT version FROM workflows WHERE project_id = ? AND name = ?", (project_id, name)
        ) as cursor:
            row = await cursor.fetchone()
        if row is None:
            raise workflow_not_found(name)
        version = int(row[0])
        _check_if_match(if_match, version, name)
        await tx.conn.execute("DELETE FROM workflows WHERE project_id = ? AND name = ?", (project_id, name))
        revision = await tx.bump_revision(project_id)
        await tx.emit(WorkflowDeleted(seq=0, project=project_id, revision=revision, name=name, version=version))

    return operation
