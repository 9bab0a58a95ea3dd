"""Execution records: created queued with a grant, claimed by a worker, finished by its result.

Only the SHA-256 of a grant is stored. An execution is *open* (queued or running) until it has
a result or times out; the first result wins. Ids start with the creation time in hex, so
ordering by id orders by age, paging uses an id as its cursor, and the age bound is an id bound.

Retention runs inside the writer batch that creates an execution: the project keeps its newest
`keep` executions and none older than `max_age_s`; open executions whose grant is still live are
never pruned. Open executions whose grant expired are marked timed out on the same pass.
"""

import secrets as random
import time
from typing import Any, Final, Literal

import aiosqlite
import msgspec

from contract.executions import ErrorInfo, ExecutionResult, HttpReply, NodeRecord
from service.clock import now_rfc3339
from service.errors import Conflict, NotFound, Unauthorized
from service.store.usage import record_reads
from service.store.writer import Operation, Transaction

Status = Literal["queued", "running", "succeeded", "failed", "timed_out"]
OPEN: Final = ("queued", "running")
TIMEOUT_CODE: Final = "execution_timeout"


class ExecutionSummary(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    project: str
    workflow: str
    workflow_version: int
    status: Status
    attempt: int
    worker: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    error: ErrorInfo | None


class ExecutionRecord(ExecutionSummary, frozen=True, kw_only=True):
    nodes: list[NodeRecord]
    output: Any
    response: HttpReply | None


class Retention(msgspec.Struct, frozen=True, kw_only=True):
    keep: int  # per project; 0: no count bound
    max_age_s: float  # 0: no age bound


class NewExecution(msgspec.Struct, frozen=True, kw_only=True):
    project: str
    workflow: str
    workflow_version: int
    grant_hash: bytes
    grant_expires: float


class GrantRow(msgspec.Struct, frozen=True, kw_only=True):
    execution_id: str
    project_id: str
    live: bool


class CreatedExecution(msgspec.Struct, frozen=True, kw_only=True):
    record: ExecutionRecord
    revision: int  # the project's revision as the execution was created: what its nodes must see at least


class ClaimOutcome(msgspec.Struct, frozen=True, kw_only=True):
    attempt: int | None  # None: the execution had finished, or just timed out


_SUMMARY_COLUMNS = (
    "id, project_id, workflow, workflow_version, status, attempt, worker, created_at, started_at, finished_at, "
    "error_code, error_message, error_node, error_http_status"
)
_RECORD_COLUMNS = f"{_SUMMARY_COLUMNS}, nodes, output, response"
_nodes_decoder: Final = msgspec.json.Decoder(list[NodeRecord])
_reply_decoder: Final = msgspec.json.Decoder(HttpReply)
_encoder: Final = msgspec.json.Encoder()


def id_floor(unix_s: float) -> str:
    """The smallest id an execution created at `unix_s` can have."""
    return f"ex_{int(unix_s * 1000):012x}"


def new_execution_id() -> str:
    return id_floor(time.time()) + random.token_hex(8)


def execution_not_found(execution_id: str) -> NotFound:
    return NotFound(f"no execution {execution_id!r} in this project", code="execution_not_found")


def execution_finished(execution_id: str) -> Conflict:
    return Conflict(f"execution {execution_id!r} already has a result", code="execution_finished")


def _error(row: Any, start: int) -> ErrorInfo | None:
    code, message, node_id, http_status = row[start : start + 4]
    if code is None:
        return None
    return ErrorInfo(code=code, message=message or "", node_id=node_id, http_status=http_status)


def _summary_fields(row: Any) -> dict[str, Any]:
    return {
        "id": row[0],
        "project": row[1],
        "workflow": row[2],
        "workflow_version": int(row[3]),
        "status": row[4],
        "attempt": int(row[5]),
        "worker": row[6],
        "created_at": row[7],
        "started_at": row[8],
        "finished_at": row[9],
        "error": _error(row, 10),
    }


def _record(row: Any) -> ExecutionRecord:
    return ExecutionRecord(
        **_summary_fields(row),
        nodes=_nodes_decoder.decode(row[14]) if row[14] else [],
        output=msgspec.json.decode(row[15]) if row[15] else None,
        response=_reply_decoder.decode(row[16]) if row[16] else None,
    )


async def get_execution(conn: aiosqlite.Connection, project_id: str, execution_id: str) -> ExecutionRecord:
    async with conn.execute(
        f"SELECT {_RECORD_COLUMNS} FROM executions WHERE id = ? AND project_id = ?", (execution_id, project_id)
    ) as cursor:
        row = await cursor.fetchone()
    if row is None:
        raise execution_not_found(execution_id)
    return _record(row)


async def list_executions(
    conn: aiosqlite.Connection, project_id: str, *, limit: int, before: str | None, workflow: str | None
) -> list[ExecutionSummary]:
    """Newest first; `before` is an execution id (the previous page's last)."""
    sql = f"SELECT {_SUMMARY_COLUMNS} FROM executions WHERE project_id = ?"
    params: list[Any] = [project_id]
    if before is not None:
        sql += " AND id < ?"
        params.append(before)
    if workflow is not None:
        sql += " AND workflow = ?"
        params.append(workflow)
    sql += " ORDER BY id DESC LIMIT ?"
    params.append(limit)
    async with conn.execute(sql, params) as cursor:
        rows = await cursor.fetchall()
    return [ExecutionSummary(**_summary_fields(row)) for row in rows]


async def find_grant(conn: aiosqlite.Connection, grant_hash: bytes) -> GrantRow | None:
    """The execution a grant belongs to; `live` while the execution is open and the grant unexpired."""
    async with conn.execute(
        "SELECT id, project_id, status, grant_expires FROM executions WHERE grant_hash = ?", (grant_hash,)
    ) as cursor:
        row = await cursor.fetchone()
    if row is None:
        return None
    live = row[2] in OPEN and time.time() < float(row[3])
    return GrantRow(execution_id=row[0], project_id=row[1], live=live)


async def _read_record(tx: Transaction, execution_id: str) -> ExecutionRecord:
    async with tx.conn.execute(f"SELECT {_RECORD_COLUMNS} FROM executions WHERE id = ?", (execution_id,)) as cursor:
        row = await cursor.fetchone()
    assert row is not None
    return _record(row)


def create_execution(new: NewExecution, retention: Retention) -> Operation[CreatedExecution]:
    async def operation(tx: Transaction) -> CreatedExecution:
        async with tx.conn.execute("SELECT revision FROM projects WHERE id = ?", (new.project,)) as cursor:
            row = await cursor.fetchone()
        if row is None:
            raise NotFound("no such project", code="project_not_found")
        execution_id = new_execution_id()
        await tx.conn.execute(
            "INSERT INTO executions (id, project_id, workflow, workflow_version, status, created_at, grant_hash, "
            "grant_expires) VALUES (?, ?, ?, ?, 'queued', ?, ?, ?)",
            (
                execution_id,
                new.project,
                new.workflow,
                new.workflow_version,
                now_rfc3339(),
                new.grant_hash,
                new.grant_expires,
            ),
        )
        await _time_out_expired(tx)
        await _prune(tx, new.project, retention)
        return CreatedExecution(record=await _read_record(tx, execution_id), revision=int(row[0]))

    return operation


async def _time_out_expired(tx: Transaction) -> None:
    """Open executions past their grant's expiry: nobody waits for them and no result may come."""
    await tx.conn.execute(
        "UPDATE executions SET status = 'timed_out', finished_at = ?, error_code = ?, "
        "error_message = 'the execution did not finish before its deadline' "
        "WHERE status IN ('queued', 'running') AND grant_expires < ?",
        (now_rfc3339(), TIMEOUT_CODE, time.time()),
    )


async def _prune(tx: Transaction, project_id: str, retention: Retention) -> None:
    prunable = "project_id = ? AND (status NOT IN ('queued', 'running') OR grant_expires < ?)"
    now = time.time()
    if retention.keep > 0:
        async with tx.conn.execute(
            "SELECT id FROM executions WHERE project_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?",
            (project_id, retention.keep),
        ) as cursor:
            row = await cursor.fetchone()
        if row is not None:
            await tx.conn.execute(f"DELETE FROM executions WHERE {prunable} AND id <= ?", (project_id, now, row[0]))
    if retention.max_age_s > 0:
        oldest_kept = id_floor(now - retention.max_age_s)
        await tx.conn.execute(f"DELETE FROM executions WHERE {prunable} AND id < ?", (project_id, now, oldest_kept))


async def _open_row(tx: Transaction, project_id: str, execution_id: str, grant_hash: bytes) -> tuple[str, float]:
    """Authenticates the grant for this execution: its (status, grant expiry)."""
    async with tx.conn.execute(
        "SELECT id, project_id, status, grant_expires FROM executions WHERE grant_hash = ?", (grant_hash,)
    ) as cursor:
        row = await cursor.fetchone()
    if row is None:
        raise Unauthorized("unknown grant", code="invalid_token")
    if row[0] != execution_id or row[1] != project_id:
        raise execution_not_found(execution_id)
    return str(row[2]), float(row[3])


def claim_execution(project_id: str, execution_id: str, grant_hash: bytes, worker: str) -> Operation[ClaimOutcome]:
    """Status running, attempt + 1. A claim after the grant expired times the execution out."""

    async def operation(tx: Transaction) -> ClaimOutcome:
        status, expires = await _open_row(tx, project_id, execution_id, grant_hash)
        if status not in OPEN:
            raise execution_finished(execution_id)
        now = now_rfc3339()
        if time.time() >= expires:
            await tx.conn.execute(
                "UPDATE executions SET status = 'timed_out', finished_at = ?, error_code = ?, error_message = ? "
                "WHERE id = ?",
                (now, TIMEOUT_CODE, "the execution was claimed after its deadline", execution_id),
            )
            return ClaimOutcome(attempt=None)
        async with tx.conn.execute(
            "UPDATE executions SET status = 'running', attempt = attempt + 1, started_at = coalesce(started_at, ?), "
            "worker = coalesce(nullif(?, ''), worker) WHERE id = ? RETURNING attempt",
            (now, worker, execution_id),
        ) as cursor:
            row = await cursor.fetchone()
        assert row is not None
        return ClaimOutcome(attempt=int(row[0]))

    return operation


def record_result(
    project_id: str, execution_id: str, grant_hash: bytes, result: ExecutionResult
) -> Operation[ExecutionRecord]:
    """The first result wins; it is accepted after the grant expired as long as none came before."""

    async def operation(tx: Transaction) -> ExecutionRecord:
        status, _ = await _open_row(tx, project_id, execution_id, grant_hash)
        if status not in OPEN:
            raise execution_finished(execution_id)
        error = result.error
        await tx.conn.execute(
            "UPDATE executions SET status = ?, worker = coalesce(nullif(?, ''), worker), "
            "started_at = coalesce(started_at, ?), finished_at = ?, nodes = ?, output = ?, response = ?, "
            "error_code = ?, error_message = ?, error_node = ?, error_http_status = ? WHERE id = ?",
            (
                result.status,
                result.worker,
                now_rfc3339(),
                now_rfc3339(),
                _encoder.encode(result.nodes).decode(),
                _encoder.encode(result.output).decode(),
                None if result.response is None else _encoder.encode(result.response).decode(),
                None if error is None else error.code,
                None if error is None else error.message,
                None if error is None else error.node_id,
                None if error is None else error.http_status,
                execution_id,
            ),
        )
        await record_reads(tx, project_id, execution_id, result.worker, result.reads)  # audit, last_used_at
        return await _read_record(tx, execution_id)

    return operation


def finish_unrun(execution_id: str, status: Status, code: str, message: str) -> Operation[ExecutionRecord]:
    """Finish an execution the service gives up on (timed out, or never queued); a result
    recorded in the meantime wins, and is what comes back."""

    async def operation(tx: Transaction) -> ExecutionRecord:
        await tx.conn.execute(
            "UPDATE executions SET status = ?, finished_at = ?, error_code = ?, error_message = ? "
            "WHERE id = ? AND status IN ('queued', 'running')",
            (status, now_rfc3339(), code, message, execution_id),
        )
        return await _read_record(tx, execution_id)

    return operation
