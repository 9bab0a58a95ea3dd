"""Starting executions: record one with its grant, XADD its request, wait in-process for its result.

The service is one process, so a caller's wait is a future keyed by execution id, resolved by
the result route right after the writer records the result. The Redis client here is its own,
with short socket timeouts, no retries and a hard deadline around each XADD: while Redis is
down a request fails within about a second with 503 `queue_unavailable`, and the event loop
is never held up.
"""

import asyncio
import logging
import secrets as random
import time
from typing import Any, Final

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
    ExecutionRecord,
    NewExecution,
    Retention,
    create_execution,
    finish_unrun,
)
from service.store.workflows import StoredWorkflow, definition_dict
from service.store.writer import Writer

log = logging.getLogger("service.dispatch")

QUEUE_TIMEOUT_S: Final = 1.0


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


class Dispatcher:
    def __init__(self, client: redis.Redis, writer: Writer, settings: Settings, stream: str) -> None:
        self._redis = client
        self._writer = writer
        self._stream = stream
        self._maxlen = settings.executions_maxlen
        self._timeout_s = settings.hook_timeout_s
        self._grace_s = settings.grant_grace_s
        self._retention = Retention(keep=settings.executions_keep, max_age_s=settings.executions_max_age_s)
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
        created = await self._writer.submit(create_execution(new, self._retention), durable=False)
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
