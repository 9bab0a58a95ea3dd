"""Execution records: created queued with a grant, started by a worker, finished by its result.

Only the SHA-256 of a grant is stored. An execution is *open* (queued or running) until it has
a result or times out; the first result wins. Ids start with the creation time in hex, so
ordering by id orders by age, paging uses an id as its cursor, and the age bound is an id bound.

Retention (`maintain_executions`) is an operation of its own, which the dispatcher runs beside a
create when it is due (service.dispatch): the project keeps its newest `keep` executions and none
older than `max_age_s`; open executions whose grant is still live are never pruned. Open
executions whose grant expired are marked timed out on the same pass.

The execution path costs one statement per step (the writer runs a batch's statements one
after another, on the event loop): create is one INSERT, claim one UPDATE, result one UPDATE
(plus the reads it reports); the records they answer are built from what was written. When a
claim or a result matches no open row, a second read finds out why (401, 404 or 409).
"""

import random
import time
from typing import Any, Final, Literal

import aiosqlite
import msgspec

from contract.executions import ErrorInfo, ExecutionResult, HttpReply, NodeRecord, StartedReport
from service.clock import now_rfc3339, rfc3339
from service.errors import Conflict, NotFound, Unauthorized
from service.store.db import fetch_all, fetch_one
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
    id: str  # new_execution_id(), made by the caller: the request is queued while the row is written
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


# Execution ids are unique, not secret (the grant is the secret): a seeded generator, with no
# system call per execution.
_id_bits: Final = random.Random()  # noqa: S311 - uniqueness, not secrecy


def new_execution_id() -> str:
    return f"{id_floor(time.time())}{_id_bits.getrandbits(64):016x}"


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
    row = await fetch_one(
        conn, f"SELECT {_RECORD_COLUMNS} FROM executions WHERE id = ? AND project_id = ?", (execution_id, project_id)
    )
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
    rows = await fetch_all(conn, sql, params)
    return [ExecutionSummary(**_summary_fields(row)) for row in rows]


async def find_grant(conn: aiosqlite.Connection, grant_hash: bytes) -> GrantRow | None:
    """The execution a grant belongs to; `live` while the execution is open and the grant unexpired."""
    row = await fetch_one(
        conn, "SELECT id, project_id, status, grant_expires FROM executions WHERE grant_hash = ?", (grant_hash,)
    )
    if row is None:
        return None
    live = row[2] in OPEN and time.time() < float(row[3])
    return GrantRow(execution_id=row[0], project_id=row[1], live=live)


async def _read_record(tx: Transaction, execution_id: str) -> ExecutionRecord:
    row = await fetch_one(tx.conn, f"SELECT {_RECORD_COLUMNS} FROM executions WHERE id = ?", (execution_id,))
    assert row is not None
    return _record(row)


def create_execution(new: NewExecution) -> Operation[CreatedExecution]:
    """One INSERT that also reads the project's revision (nothing is written for an unknown project)."""

    async def operation(tx: Transaction) -> CreatedExecution:
        execution_id, created_at = new.id, now_rfc3339()
        row = await fetch_one(
            tx.conn,
            "INSERT INTO executions (id, project_id, workflow, workflow_version, status, created_at, grant_hash, "
            "grant_expires) SELECT ?, id, ?, ?, 'queued', ?, ?, ? FROM projects WHERE id = ? "
            "RETURNING (SELECT revision FROM projects WHERE projects.id = executions.project_id)",
            (
                execution_id,
                new.workflow,
                new.workflow_version,
                created_at,
                new.grant_hash,
                new.grant_expires,
                new.project,
            ),
        )
        if row is None:
            raise NotFound("no such project", code="project_not_found")
        record = ExecutionRecord(
            id=execution_id,
            project=new.project,
            workflow=new.workflow,
            workflow_version=new.workflow_version,
            status="queued",
            attempt=0,
            worker=None,
            created_at=created_at,
            started_at=None,
            finished_at=None,
            error=None,
            nodes=[],
            output=None,
            response=None,
        )
        return CreatedExecution(record=record, revision=int(row[0]))

    return operation


def maintain_executions(project_id: str | None, retention: Retention, *, time_out: bool) -> Operation[None]:
    """Retention for `project_id` (None: none), and with `time_out` the open executions of every
    project whose grant expired marked timed out. Bookkeeping: the dispatcher runs it now and then."""

    async def operation(tx: Transaction) -> None:
        if time_out:
            await _time_out_expired(tx)
        if project_id is not None:
            await _prune(tx, project_id, retention)

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
        row = await fetch_one(
            tx.conn,
            "SELECT id FROM executions WHERE project_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?",
            (project_id, retention.keep),
        )
        if row is not None:
            await tx.conn.execute(f"DELETE FROM executions WHERE {prunable} AND id <= ?", (project_id, now, row[0]))
    if retention.max_age_s > 0:
        oldest_kept = id_floor(now - retention.max_age_s)
        await tx.conn.execute(f"DELETE FROM executions WHERE {prunable} AND id < ?", (project_id, now, oldest_kept))


async def _open_row(tx: Transaction, project_id: str, execution_id: str, grant_hash: bytes) -> tuple[str, float]:
    """Authenticates the grant for this execution: its (status, grant expiry)."""
    row = await fetch_one(
        tx.conn, "SELECT id, project_id, status, grant_expires FROM executions WHERE grant_hash = ?", (grant_hash,)
    )
    if row is None:
        raise Unauthorized("unknown grant", code="invalid_token")
    if row[0] != execution_id or row[1] != project_id:
        raise execution_not_found(execution_id)
    return str(row[2]), float(row[3])


# The grant, the execution and the project in one WHERE: a claim or a result that matches no open
# row is refused, and `_open_row` then says why.
_THIS_OPEN_EXECUTION: Final = "grant_hash = ? AND id = ? AND project_id = ? AND status IN ('queued', 'running')"


def claim_execution(
    project_id: str, execution_id: str, grant_hash: bytes, worker: str, *, redelivered: bool = False
) -> Operation[ClaimOutcome]:
    """Status running, attempt + 1 (at least 2 when `redelivered`: a first delivery runs unclaimed).
    A claim after the grant expired times the execution out."""

    async def operation(tx: Transaction) -> ClaimOutcome:
        now, unix_now = now_rfc3339(), time.time()
        row = await fetch_one(
            tx.conn,
            "UPDATE executions SET status = 'running', attempt = max(attempt, ?) + 1, "
            "started_at = coalesce(started_at, ?), worker = coalesce(nullif(?, ''), worker) "
            f"WHERE {_THIS_OPEN_EXECUTION} AND grant_expires > ? RETURNING attempt",
            (int(redelivered), now, worker, grant_hash, execution_id, project_id, unix_now),
        )
        if row is not None:
            return ClaimOutcome(attempt=int(row[0]))
        status, _ = await _open_row(tx, project_id, execution_id, grant_hash)
        if status not in OPEN:
            raise execution_finished(execution_id)
        await tx.conn.execute(  # open, so its grant expired
            "UPDATE executions SET status = 'timed_out', finished_at = ?, error_code = ?, error_message = ? "
            "WHERE id = ?",
            (now, TIMEOUT_CODE, "the execution was claimed after its deadline", execution_id),
        )
        return ClaimOutcome(attempt=None)

    return operation


def mark_started(project_id: str, execution_id: str, grant_hash: bytes, report: StartedReport) -> Operation[None]:
    """A worker says a queued execution is running (sent only for executions that take a while)."""

    async def operation(tx: Transaction) -> None:
        await tx.conn.execute(
            "UPDATE executions SET status = 'running', attempt = max(attempt, ?), "
            "started_at = coalesce(started_at, ?), worker = coalesce(nullif(?, ''), worker) "
            f"WHERE {_THIS_OPEN_EXECUTION}",
            (report.attempt, rfc3339(report.started_at), report.worker, grant_hash, execution_id, project_id),
        )

    return operation


def record_result(
    project_id: str, execution_id: str, grant_hash: bytes, result: ExecutionResult
) -> Operation[ExecutionRecord]:
    """The first result wins; it is accepted after the grant expired as long as none came before."""

    async def operation(tx: Transaction) -> ExecutionRecord:
        error = result.error
        now = now_rfc3339()
        # A first delivery is not claimed: its attempt and start come with the result.
        started = rfc3339(result.started_at) if result.started_at > 0 else now
        finished = rfc3339(result.finished_at) if result.finished_at > 0 else now  # when it ended, not when heard
        row = await fetch_one(
            tx.conn,
            "UPDATE executions SET status = ?, worker = coalesce(nullif(?, ''), worker), attempt = max(attempt, ?), "
            "started_at = coalesce(started_at, ?), finished_at = ?, nodes = ?, output = ?, response = ?, "
            f"error_code = ?, error_message = ?, error_node = ?, error_http_status = ? WHERE {_THIS_OPEN_EXECUTION} "
            "RETURNING workflow, workflow_version, attempt, worker, created_at, started_at",
            (
                result.status,
                result.worker,
                result.attempt,
                started,
                finished,
                _encoder.encode(result.nodes).decode(),
                _encoder.encode(result.output).decode(),
                None if result.response is None else _encoder.encode(result.response).decode(),
                None if error is None else error.code,
                None if error is None else error.message,
                None if error is None else error.node_id,
                None if error is None else error.http_status,
                grant_hash,
                execution_id,
                project_id,
            ),
        )
        if row is None:
            await _open_row(tx, project_id, execution_id, grant_hash)  # 401 or 404
            raise execution_finished(execution_id)  # the grant's own execution: not open
        await record_reads(tx, project_id, execution_id, result.worker, result.reads)  # audit, last_used_at
        return ExecutionRecord(  # what was just written, as `_record` would read it back
            id=execution_id,
            project=project_id,
            workflow=row[0],
            workflow_version=int(row[1]),
            status=result.status,
            attempt=int(row[2]),
            worker=row[3],
            created_at=row[4],
            started_at=row[5],
            finished_at=finished,
            error=error,
            nodes=list(result.nodes),
            output=result.output,
            response=result.response,
        )

    return operation


def finish_unrun(execution_id: str, status: Status, code: str, message: str) -> Operation[ExecutionRecord]:
    """Finish an execution the service gives up on (timed out, or never queued); a result
    recorded in the meantime wins, and is what comes back."""

    async def operation(tx: Transaction) -> ExecutionRecord:
        row = await fetch_one(
            tx.conn,
            "UPDATE executions SET status = ?, finished_at = ?, error_code = ?, error_message = ? "
            f"WHERE id = ? AND status IN ('queued', 'running') RETURNING {_RECORD_COLUMNS}",
            (status, now_rfc3339(), code, message, execution_id),
        )
        return _record(row) if row is not None else await _read_record(tx, execution_id)

    return operation
