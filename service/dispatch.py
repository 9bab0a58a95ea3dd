"""Starting executions: record one with its grant, XADD its request, wait in-process for its result.

The service is one process, so a caller's wait is a future keyed by execution id, resolved
right after the writer records the result (service.results reads them from the results stream).
Requests go out in batches (contract.redis_batch) on a Redis client of their own, with short
socket timeouts, no retries and a hard deadline around each batch: while Redis is down a request
fails within about a second or two with 503 `queue_unavailable`, and the event loop is never held
up. A batch is one MULTI: Redis wakes a blocked worker once the whole batch is in the stream, so
it reads all of it (without, the first XADD wakes it for one entry; measured: 10% more worker CPU
per execution with two workers).
"""

import asyncio
import base64
import contextlib
import hmac
import logging
import os
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Final

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from contract import redis_clients
from contract.executions import (
    FIELD_MESSAGE,
    GRANT_PREFIX,
    ExecutionInput,
    ExecutionRequest,
    ExecutionResult,
    request_encoder,
)
from contract.redis_batch import Command, CommandBatcher
from service.auth import Authenticator, hash_token
from service.errors import ApiError, NotFound, ServiceUnavailable
from service.revisions import ProjectRevisions
from service.settings import Settings
from service.store.executions import (
    TIMEOUT_CODE,
    CreatedExecution,
    ExecutionRecord,
    NewExecution,
    Retention,
    create_execution,
    finish_unrun,
    maintain_executions,
    new_execution_id,
)
from service.store.writer import Writer
from service.upkeep import Upkeep, log_upkeep_failure
from service.workflow_cache import RunnableWorkflow

log = logging.getLogger("service.dispatch")

QUEUE_TIMEOUT_S: Final = 1.0
SETTLE_TIMEOUT_S: Final = 1.0

# What a webhook is answered from: the reported result, or the record when that came first.
Outcome = ExecutionRecord | ExecutionResult


class QueueUnavailable(ServiceUnavailable):
    code = "queue_unavailable"


class ExecutionTimeout(ApiError):
    status, code = 504, TIMEOUT_CODE

    def __init__(self, execution_id: str, timeout_s: float) -> None:
        super().__init__(f"the workflow did not finish within {timeout_s:g} s")
        self.execution_id = execution_id


def queue_client(redis_url: str) -> redis.Redis:
    return redis_clients.from_url(
        redis_url, socket_connect_timeout=0.5, socket_timeout=QUEUE_TIMEOUT_S, retry=Retry(NoBackoff(), 0)
    )


class _GrantRandomness:
    """The OS's randomness for grants, read 4 KiB at a time. Each read releases the GIL, which another
    of the service's threads may then hold for up to the switch interval: one read per execution
    cost ~13 µs under load (profiled); one per 128 executions costs nothing to speak of."""

    def __init__(self) -> None:
        self.forget()

    def forget(self) -> None:
        """Drop what was read ahead (the next grant reads afresh)."""
        self._pool, self._used = b"", 0

    def take(self, size: int) -> bytes:
        if self._used + size > len(self._pool):
            self._pool, self._used = os.urandom(max(4096, size)), 0
        self._used += size
        return self._pool[self._used - size : self._used]


_grant_randomness = _GrantRandomness()
# A forked child must not mint the grants its parent will: it starts with nothing read ahead.
os.register_at_fork(after_in_child=_grant_randomness.forget)


def mint_grant() -> str:
    """A grant for one execution (32 random bytes, as `secrets.token_urlsafe(32)` has); the database
    keeps only its hash."""
    return GRANT_PREFIX + base64.urlsafe_b64encode(_grant_randomness.take(32)).rstrip(b"=").decode("ascii")


class Dispatcher:
    def __init__(
        self,
        client: redis.Redis,
        writer: Writer,
        revisions: ProjectRevisions,
        grants: Authenticator,
        settings: Settings,
        stream: str,
    ) -> None:
        self._queue = CommandBatcher(client, transaction=True, timeout_s=QUEUE_TIMEOUT_S)
        self._stream, self._maxlen = stream, settings.executions_maxlen
        self._writer, self._revisions, self._grants = writer, revisions, grants
        self._timeout_s = settings.hook_timeout_s
        self._grace_s = settings.grant_grace_s
        self._retention = Retention(keep=settings.executions_keep, max_age_s=settings.executions_max_age_s)
        self._upkeep = Upkeep(self._retention)
        self._waiters: dict[str, _Waiter] = {}
        # execution id -> (project, its write committed): rows being created, results being recorded
        self._creating: dict[str, tuple[str, asyncio.Future[Any]]] = {}
        self._recording: dict[str, tuple[str, asyncio.Future[Any]]] = {}

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def execute(
        self, project: str, workflow: RunnableWorkflow, data: ExecutionInput, *, wait: bool = True
    ) -> ExecutionRecord:
        """The finished record; with `wait=False` the queued one. Raises ExecutionTimeout (504)
        after `hook_timeout_s` and QueueUnavailable (503) when the request cannot be queued."""
        async with self._started(project, workflow, data, early=False) as (request, waiter, record):
            if not wait:
                return record
            outcome = await self._wait(request, waiter)
            assert isinstance(outcome, ExecutionRecord)
            return outcome

    async def answer(self, project: str, workflow: RunnableWorkflow, data: ExecutionInput) -> tuple[str, Outcome]:
        """For a webhook: the result as soon as a worker reports it, while its record is written
        (reads of the record wait for that: see `settled`). Raises as `execute` does."""
        async with self._started(project, workflow, data, early=True) as (request, waiter, _record):
            return request.id, await self._wait(request, waiter)

    @asynccontextmanager
    async def _started(
        self, project: str, workflow: RunnableWorkflow, data: ExecutionInput, *, early: bool
    ) -> AsyncIterator[tuple[ExecutionRequest, "_Waiter", ExecutionRecord]]:
        """`early`: the waiter takes the result as reported, before its record is written."""
        revision = await self._revisions.current(project)
        if revision is None:
            raise NotFound("no such project", code="project_not_found")
        request = self._request(project, workflow, data, revision)
        waiter = self._waiters[request.id] = _Waiter(hash_token(request.grant), early)
        try:
            yield request, waiter, await self._create_and_enqueue(request, waiter.grant_hash)
        finally:
            self._waiters.pop(request.id, None)

    def _request(
        self, project: str, workflow: RunnableWorkflow, data: ExecutionInput, revision: int
    ) -> ExecutionRequest:
        meta = workflow.stored.meta
        return ExecutionRequest(
            id=new_execution_id(),
            project=project,
            workflow=meta.name,
            workflow_version=meta.version,
            definition=workflow.definition,
            input=data,
            grant=mint_grant(),
            deadline=time.time() + self._timeout_s,
            revision=revision,
        )

    async def _create_and_enqueue(self, request: ExecutionRequest, grant_hash: bytes) -> ExecutionRecord:
        """The row is queued to the writer before the request goes to Redis, so it is committed
        before any result for it (the writer runs operations in order); the two overlap. (Both leave
        on the next turn of the loop: the writer's hand-over was scheduled first, by `_create`.)"""
        creating = self._create(request, grant_hash)
        try:
            await self._enqueue(request)
        finally:
            created = await creating  # its error, if any, is the one to answer
        return created.record

    def _create(self, request: ExecutionRequest, grant_hash: bytes) -> "asyncio.Future[CreatedExecution]":
        """Record the execution; a due upkeep pass is queued right after it (same batch, after the
        INSERT), and nobody waits for it."""
        new = NewExecution(
            id=request.id,
            project=request.project,
            workflow=request.workflow,
            workflow_version=request.workflow_version,
            grant_hash=grant_hash,
            grant_expires=request.deadline + self._grace_s,
        )
        self._grants.minted(grant_hash, request.id, request.project)
        creating = self._writer.submit_nowait(create_execution(new), durable=False)
        self._creating[request.id] = (request.project, creating)
        creating.add_done_callback(lambda _: self._created(request.id, grant_hash))
        due = self._upkeep.due(request.project)
        if due is not None:
            upkeep = maintain_executions(due.prune, self._retention, time_out=due.time_out)
            self._writer.submit_nowait(upkeep, durable=False).add_done_callback(log_upkeep_failure)
        return creating

    def _created(self, execution_id: str, grant_hash: bytes) -> None:
        self._creating.pop(execution_id, None)
        self._grants.written(grant_hash)

    def reported(self, execution_id: str, grant_hash: bytes, result: ExecutionResult) -> None:
        """A worker reported a result with the execution's grant: a webhook waiting for it is
        answered now, before the record is written."""
        waiter = self._waiters.get(execution_id)
        if waiter is not None and waiter.early and hmac.compare_digest(waiter.grant_hash, grant_hash):
            _answer(waiter.outcome, result)

    def resolve(self, record: ExecutionRecord) -> None:
        """Called once a result is recorded: the caller waiting for it (if any) gets the record."""
        waiter = self._waiters.get(record.id)
        if waiter is not None:
            _answer(waiter.outcome, record)

    @contextmanager
    def recording(self, execution_id: str, project: str) -> Iterator[None]:
        """Around the write of a reported result: reads of that execution wait for it."""
        committed = _future()
        self._recording[execution_id] = (project, committed)
        try:
            yield
        finally:
            _answer(committed, None)
            if self._recording.get(execution_id, (None, committed))[1] is committed:
                del self._recording[execution_id]

    async def settled(self, project: str, execution_id: str | None = None) -> None:
        """Wait (briefly) for results of `project` reported but not yet written, so a caller that
        was answered reads the record of its answer; with `execution_id`, also for that execution's
        row if it is being created (a worker may run it before its row is committed)."""
        if execution_id is None:
            pending = [committed for owner, committed in self._recording.values() if owner == project]
        else:
            writes = (self._recording.get(execution_id), self._creating.get(execution_id))
            pending = [write[1] for write in writes if write is not None and write[0] == project]
        if pending:
            await asyncio.wait(pending, timeout=SETTLE_TIMEOUT_S)

    async def _enqueue(self, request: ExecutionRequest) -> None:
        try:  # the batch times out after QUEUE_TIMEOUT_S (one behind a stuck batch waits for it first)
            await self._queue.run(self._request_command(request_encoder.encode(request)))
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("execution %s not queued: executions stream unavailable (%s)", request.id, type(exc).__name__)
            message = "the execution queue is unavailable; try again shortly"
            await self._writer.submit(finish_unrun(request.id, "failed", "queue_unavailable", message))
            raise QueueUnavailable(message) from None

    def _request_command(self, message: bytes) -> Command:
        return ("XADD", self._stream, "MAXLEN", "~", self._maxlen, "*", FIELD_MESSAGE, message)

    async def _wait(self, request: ExecutionRequest, waiter: "_Waiter") -> Outcome:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(_loop_time(request.deadline)):
                return await waiter.outcome
        message = f"the workflow did not finish within {self._timeout_s:g} s"
        final = await self._writer.submit(finish_unrun(request.id, "timed_out", TIMEOUT_CODE, message))
        if final.status == "timed_out":  # else a result was recorded at the last moment: it wins
            raise ExecutionTimeout(request.id, self._timeout_s)
        return final


def _loop_time(unix: float) -> float:
    """The event loop's clock reading at Unix time `unix`."""
    return asyncio.get_running_loop().time() + (unix - time.time())


def _future() -> "asyncio.Future[Any]":
    return asyncio.get_running_loop().create_future()


@dataclass(slots=True)
class _Waiter:
    """A caller waiting for one execution: its record once written or, when `early`, its result
    as soon as a worker reports it (whichever comes first)."""

    grant_hash: bytes
    early: bool
    outcome: "asyncio.Future[Outcome]" = field(default_factory=_future)


def _answer(future: "asyncio.Future[Any]", outcome: Any) -> None:
    if not future.done():
        future.set_result(outcome)
