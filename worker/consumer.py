"""Takes executions from the executions stream through a consumer group, so each runs once.

As taskiq-redis does: create the group with MKSTREAM (tolerating BUSYGROUP), read with a bounded
block, ack only after the result is recorded by the service, and reclaim messages a dead worker
left pending (XAUTOCLAIM). While an execution runs its message is re-claimed by its own worker
now and then, so a long execution is not taken over by another worker. On shutdown the consumer
reads nothing new and finishes what it holds.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import cast

import msgspec
import redis.asyncio as redis
from redis.exceptions import RedisError, ResponseError

from contract.executions import (
    EXECUTIONS_GROUP,
    FIELD_MESSAGE,
    RECLAIM_AFTER_MS,
    ErrorInfo,
    ExecutionRequest,
    ExecutionResult,
    request_decoder,
)
from contract.logs import EXECUTION_ID
from worker.engine_client import EngineApiError, ExecutionApi, ExecutionFinished, ExecutionUnknown

log = logging.getLogger("worker.consumer")

Run = Callable[[ExecutionRequest, int], Awaitable[ExecutionResult]]
Entry = tuple[bytes, dict[bytes, bytes]]
RECORD_RETRY_S = 0.2
RECORD_GRACE_S = 30.0


class ExecutionConsumer:
    def __init__(
        self,
        client: redis.Redis,
        stream: str,
        name: str,
        api: ExecutionApi,
        run: Run,
        *,
        concurrency: int = 16,
        block_ms: int = 1000,
        reclaim_after_ms: int = RECLAIM_AFTER_MS,
    ) -> None:
        self._redis, self._stream, self.name = client, stream, name
        self._api, self._run = api, run
        self._concurrency = concurrency
        self._slots = asyncio.Semaphore(concurrency)
        self._block_ms, self._reclaim_after_ms = block_ms, reclaim_after_ms
        self._running: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self.completed = 0

    async def ensure_group(self) -> None:
        try:
            await self._redis.xgroup_create(self._stream, EXECUTIONS_GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def run(self) -> None:
        """Until stop(): (re)create the group when needed — Redis may start late, or come back
        empty with the group gone (NOGROUP) — reclaim now and then, read what there is room for."""
        next_reclaim, group_ready = 0.0, False
        while not self._stopping.is_set():
            try:
                if not group_ready:
                    await self.ensure_group()
                    group_ready = True
                if time.monotonic() >= next_reclaim:
                    await self._reclaim()
                    next_reclaim = time.monotonic() + self._reclaim_after_ms / 3000
                await self._read()
            except (RedisError, OSError) as exc:
                log.warning("executions stream unavailable (%s); retrying", type(exc).__name__)
                group_ready = False
                await asyncio.sleep(0.5)

    async def stop(self, timeout_s: float = 30.0) -> None:
        """Read nothing new; wait for the executions in hand to finish."""
        self._stopping.set()
        if self._running:
            await asyncio.wait(self._running, timeout=timeout_s)

    async def _read(self) -> None:
        await self._slots.acquire()  # read only when a slot is free: what we read, we run
        self._slots.release()
        free = max(1, self._concurrency - len(self._running))
        reply = await self._redis.xreadgroup(
            EXECUTIONS_GROUP, self.name, {self._stream: ">"}, count=free, block=self._block_ms
        )
        for _stream, entries in cast(list[tuple[bytes, list[Entry]]], reply or []):
            for entry in entries:
                self._spawn(entry)

    async def _reclaim(self) -> None:
        reply = await self._redis.xautoclaim(
            self._stream, EXECUTIONS_GROUP, self.name, min_idle_time=self._reclaim_after_ms, count=16
        )
        for entry in cast(list[Entry], reply[1]):
            if entry and entry[1]:
                log.info("reclaimed execution message %s left pending by another worker", entry[0].decode())
                self._spawn(entry)

    def _spawn(self, entry: Entry) -> None:
        task = asyncio.create_task(self._handle(*entry))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _handle(self, message_id: bytes, fields: dict[bytes, bytes]) -> None:
        async with self._slots:
            try:
                request = request_decoder.decode(fields[FIELD_MESSAGE])
            except (KeyError, msgspec.DecodeError):
                log.error("dropping unreadable execution message %s", message_id.decode())
                await self._ack(message_id)
                return
            EXECUTION_ID.set(request.id)  # on every log line of this task (each message has its own)
            keepalive = asyncio.create_task(self._keep_claimed(message_id))
            try:
                if await self._process(request):
                    await self._ack(message_id)
            finally:
                keepalive.cancel()

    async def _process(self, request: ExecutionRequest) -> bool:
        """True when the message may be acked: the result is recorded, or there was one already."""
        try:
            attempt = (await self._api.claim(request, self.name)).attempt
            result = await self._run(request, attempt)
            result = msgspec.structs.replace(result, worker=self.name, attempt=attempt)
            await self._record(request, result)
        except ExecutionUnknown as exc:  # e.g. queued before the service lost its database: nothing to record
            log.warning("execution %s is unknown to the service (%s); acking and skipping it", request.id, exc)
        except ExecutionFinished:
            log.info("execution %s already finished; skipping", request.id)
        except EngineApiError as exc:
            log.warning("execution %s left pending for a retry: %s", request.id, exc)
            return False
        self.completed += 1
        return True

    async def _record(self, request: ExecutionRequest, result: ExecutionResult) -> None:
        """Retry until the service records it (it may be restarting), within the execution's grace."""
        give_up = request.deadline + RECORD_GRACE_S
        while True:
            try:
                await self._api.record(request, result)
                return
            except EngineApiError:
                if time.time() > give_up:
                    raise
                await asyncio.sleep(RECORD_RETRY_S)

    async def _keep_claimed(self, message_id: bytes) -> None:
        while True:
            await asyncio.sleep(self._reclaim_after_ms / 3000)
            with contextlib.suppress(RedisError, OSError):
                await self._redis.xclaim(self._stream, EXECUTIONS_GROUP, self.name, 0, [message_id], justid=True)

    async def _ack(self, message_id: bytes) -> None:
        for attempt in (1, 2):  # a pooled connection may be stale after a Redis restart: one retry
            try:
                await self._redis.xack(self._stream, EXECUTIONS_GROUP, message_id)
                return
            except (RedisError, OSError) as exc:  # recorded already: a reclaim will find it finished
                if attempt == 2:
                    log.warning("could not ack %s (%s); it will be reclaimed and skipped", message_id.decode(), exc)


def failure(code: str, message: str) -> ExecutionResult:
    now = time.time()
    return ExecutionResult(
        status="failed", error=ErrorInfo(code=code, message=message), started_at=now, finished_at=now
    )
