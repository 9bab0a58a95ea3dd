"""Starting executions: record one with its grant, XADD its request, wait in-process for its result.

The service is one process, so a caller's wait is a future keyed by execution id, resolved by
the result route right after the writer records the result. The Redis client here is its own,
with short socket timeouts, no retries and a hard deadline around each XADD: while Redis is
down a request fails within about a second with 503 `queue_unavailable`, and the event loop
is never held up.
"""

import asyncio
import logging
import math
import secrets as random
import time
from collections.abc import Callable
from typing import Any, Final

import msgspec
import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from contract.executions import FIELD_MESSAGE, GRANT_PREFIX, ExecutionInput, ExecutionRequest, request_encoder
from service.auth import hash_token
from service.errors import ApiError, ServiceUnavailable
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
)
from service.store.workflows import StoredWorkflow, definition_dict
from service.store.writer import Writer

log = logging.getLogger("service.dispatch")

QUEUE_TIMEOUT_S: Final = 1.0
UPKEEP_INTERVAL_S: Final = 1.0


class QueueUnavailable(ServiceUnavailable):
    code = "queue_unavailable"


class ExecutionTimeout(ApiError):
    status, code = 504, TIMEOUT_CODE

    def __init__(self, execution_id: str, timeout_s: float) -> None:
        super().__init__(f"the workflow did not finish within {timeout_s:g} s")
        self.execution_id = execution_id


def queue_client(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(
        redis_url, socket_connect_timeout=0.5, socket_timeout=QUEUE_TIMEOUT_S, retry=Retry(NoBackoff(), 0)
    )


def mint_grant() -> tuple[str, bytes]:
    """A grant for one execution, and the hash that is all the database keeps of it."""
    grant = GRANT_PREFIX + random.token_urlsafe(32)
    return grant, hash_token(grant)


class UpkeepPass(msgspec.Struct, frozen=True, kw_only=True):
    prune: str | None  # the project whose retention bound to apply, if any
    time_out: bool  # mark every project's open executions past their grant's expiry timed out


class Upkeep:
    """When retention and time-outs are due: they run beside a create, not with every one.

    A project is pruned at most once per `interval_s` (half the age bound when that is shorter),
    or after `keep // 10` creates in it, so it holds at most about 10% more than `keep` for a
    moment; open executions past their deadline (every project's) are timed out at most once per
    `interval_s`.
    """

    def __init__(
        self,
        retention: Retention,
        interval_s: float = UPKEEP_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._bounded = retention.keep > 0 or retention.max_age_s > 0
        self._interval_s = min(interval_s, retention.max_age_s / 2) if retention.max_age_s > 0 else interval_s
        self._every = max(1, retention.keep // 10) if retention.keep > 0 else 0
        self._clock = clock
        self._projects: dict[str, tuple[float, int]] = {}  # project -> (last pass, creates since)
        self._timed_out_at = -math.inf

    def due(self, project: str) -> UpkeepPass | None:
        """Called once per create: the pass to run beside it, if one is due."""
        now = self._clock()
        last, creates = self._projects.get(project, (-math.inf, 0))
        prune = self._bounded and (now - last >= self._interval_s or 0 < self._every <= creates + 1)
        self._projects[project] = (now, 0) if prune else (last, creates + 1)
        time_out = now - self._timed_out_at >= self._interval_s
        if time_out:
            self._timed_out_at = now
        if not (prune or time_out):
            return None
        return UpkeepPass(prune=project if prune else None, time_out=time_out)


class Dispatcher:
    def __init__(self, client: redis.Redis, writer: Writer, settings: Settings, stream: str) -> None:
        self._redis = client
        self._writer = writer
        self._stream = stream
        self._maxlen = settings.executions_maxlen
        self._timeout_s = settings.hook_timeout_s
        self._grace_s = settings.grant_grace_s
        self._retention = Retention(keep=settings.executions_keep, max_age_s=settings.executions_max_age_s)
        self._upkeep = Upkeep(self._retention)
        self._waiters: dict[str, asyncio.Future[ExecutionRecord]] = {}

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def execute(
        self, project: str, workflow: StoredWorkflow, data: ExecutionInput, *, wait: bool = True
    ) -> ExecutionRecord:
        """The finished record; with `wait=False` the queued one. Raises ExecutionTimeout (504)
        after `hook_timeout_s` and QueueUnavailable (503) when the request cannot be queued."""
        grant, grant_hash = mint_grant()
        deadline = time.time() + self._timeout_s
        new = NewExecution(
            project=project,
            workflow=workflow.meta.name,
            workflow_version=workflow.meta.version,
            grant_hash=grant_hash,
            grant_expires=deadline + self._grace_s,
        )
        created = await self._create(project, new)
        record = created.record
        request = ExecutionRequest(
            id=record.id,
            project=project,
            workflow=workflow.meta.name,
            workflow_version=workflow.meta.version,
            definition=definition_dict(workflow),
            input=data,
            grant=grant,
            deadline=deadline,
            revision=created.revision,
        )
        future: asyncio.Future[ExecutionRecord] = asyncio.get_running_loop().create_future()
        self._waiters[record.id] = future
        try:
            await self._enqueue(request)
            if not wait:
                return record
            return await self._wait(record.id, future, deadline)
        finally:
            self._waiters.pop(record.id, None)

    async def _create(self, project: str, new: NewExecution) -> CreatedExecution:
        """Record the execution; a due upkeep pass is submitted right after it, so it shares its
        batch (after the INSERT) and is committed when this returns."""
        create = self._writer.submit(create_execution(new), durable=False)
        due = self._upkeep.due(project)
        if due is None:
            return await create
        created, _ = await asyncio.gather(create, self._run_upkeep(due))
        return created

    async def _run_upkeep(self, due: UpkeepPass) -> None:
        upkeep = maintain_executions(due.prune, self._retention, time_out=due.time_out)
        try:
            await self._writer.submit(upkeep, durable=False)
        except ApiError as exc:  # bookkeeping: the next pass tries again
            log.warning("execution retention pass failed: %s", exc.message)

    def resolve(self, record: ExecutionRecord) -> None:
        """Called once a result is recorded: the caller waiting for it (if any) gets the record."""
        future = self._waiters.get(record.id)
        if future is not None and not future.done():
            future.set_result(record)

    async def _enqueue(self, request: ExecutionRequest) -> None:
        fields: Any = {FIELD_MESSAGE: request_encoder.encode(request)}
        try:
            async with asyncio.timeout(QUEUE_TIMEOUT_S):
                await self._redis.xadd(self._stream, fields, maxlen=self._maxlen, approximate=True)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("execution %s not queued: executions stream unavailable (%s)", request.id, type(exc).__name__)
            message = "the execution queue is unavailable; try again shortly"
            await self._writer.submit(finish_unrun(request.id, "failed", "queue_unavailable", message))
            raise QueueUnavailable(message) from None

    async def _wait(
        self, execution_id: str, future: asyncio.Future[ExecutionRecord], deadline: float
    ) -> ExecutionRecord:
        try:
            return await asyncio.wait_for(future, timeout=max(0.0, deadline - time.time()))
        except TimeoutError:
            pass
        message = f"the workflow did not finish within {self._timeout_s:g} s"
        final = await self._writer.submit(finish_unrun(execution_id, "timed_out", TIMEOUT_CODE, message))
        if final.status == "timed_out":  # else a result was recorded at the last moment: it wins
            raise ExecutionTimeout(execution_id, self._timeout_s)
        return final
