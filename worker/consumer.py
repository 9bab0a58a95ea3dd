"""Takes executions from the executions stream through a consumer group, so each runs once.

As taskiq-redis does: create the group with MKSTREAM (tolerating BUSYGROUP), read with a bounded
block, and reclaim messages a dead worker left pending (XAUTOCLAIM). A result is handed over in
one MULTI that adds it to the results stream and acks the request, so it is acked exactly when
the result is in the service's hands (contract.executions has the whole flow). A first delivery
runs at once; a reclaimed one is claimed over HTTP first, which refuses it when it already
finished. While an execution runs its message is re-claimed by its own worker now and then, so
a long execution is not taken over by another worker. On shutdown the consumer reads nothing new
and finishes what it holds.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

import msgspec
import redis.asyncio as redis
from redis.asyncio.connection import Connection
from redis.exceptions import RedisError

from contract.executions import (
    EXECUTIONS_GROUP,
    FIELD_MESSAGE,
    RECLAIM_AFTER_MS,
    RESULTS_MAXLEN,
    STARTED_NOTICE_S,
    ErrorInfo,
    ExecutionRequest,
    ExecutionResult,
    Report,
    ResultReport,
    StartedReport,
    report_encoder,
    request_decoder,
)
from contract.groups import ensure_group
from contract.logs import EXECUTION_ID
from contract.redis_batch import Command, CommandBatcher
from contract.stream_reads import Entry, own_connection, read_entries
from contract.tasks import cancel_and_wait
from worker.engine_client import EngineApiError, ExecutionApi, ExecutionFinished, ExecutionUnknown

log = logging.getLogger("worker.consumer")

Run = Callable[[ExecutionRequest, int], Awaitable[ExecutionResult]]
RECORD_RETRY_S = 0.2
HAND_OVER_TIMEOUT_S = 5.0
RECORD_GRACE_S = 30.0


class _LeavePending(Exception):
    """The service could not say whether a reclaimed execution may run: leave it for a retry."""


class ExecutionConsumer:
    def __init__(
        self,
        client: redis.Redis,
        stream: str,
        results_stream: str,
        name: str,
        api: ExecutionApi,
        run: Run,
        *,
        concurrency: int = 16,
        block_ms: int = 1000,
        reclaim_after_ms: int = RECLAIM_AFTER_MS,
    ) -> None:
        self._redis, self._stream, self._results, self.name = client, stream, results_stream, name
        # Hand-overs of executions that finish together share one MULTI (one write, one read).
        self._hand_overs = CommandBatcher(client, transaction=True, timeout_s=HAND_OVER_TIMEOUT_S)
        self._api, self._run = api, run
        self._concurrency = concurrency
        self._slots = asyncio.Semaphore(concurrency)
        self._block_ms, self._reclaim_after_ms = block_ms, reclaim_after_ms
        self._running: set[asyncio.Task[None]] = set()
        self._notices: set[asyncio.Task[None]] = set()
        self._in_hand: set[bytes] = set()  # ids of the messages being run, kept claimed
        self._stopping = asyncio.Event()
        self.completed = 0

    async def ensure_group(self) -> None:
        await ensure_group(self._redis, self._stream, EXECUTIONS_GROUP)

    async def run(self) -> None:
        """Until stop(): (re)create the group when needed — Redis may start late, or come back
        empty with the group gone (NOGROUP) — reclaim now and then, read what there is room for."""
        keepalive = asyncio.create_task(self._keep_claimed(), name="keep-claimed")
        try:
            await self._consume()
        finally:
            await cancel_and_wait(keepalive)

    async def _consume(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.ensure_group()
                async with own_connection(self._redis) as connection:
                    await self._consume_on(connection)
            except (RedisError, OSError) as exc:
                log.warning("executions stream unavailable (%s); retrying", type(exc).__name__)
                await asyncio.sleep(0.5)

    async def _consume_on(self, connection: Connection) -> None:
        """Read and reclaim until stopped; a Redis failure ends it (the group is then ensured again)."""
        next_reclaim = 0.0
        while not self._stopping.is_set():
            if time.monotonic() >= next_reclaim:
                await self._reclaim()
                next_reclaim = time.monotonic() + self._reclaim_after_ms / 3000
            await self._read(connection)

    async def stop(self, timeout_s: float = 30.0) -> None:
        """Read nothing new; wait for the executions in hand to finish."""
        self._stopping.set()
        if self._running:
            await asyncio.wait(self._running, timeout=timeout_s)

    async def _read(self, connection: Connection) -> None:
        await self._slots.acquire()  # read only when a slot is free: what we read, we run
        self._slots.release()
        free = max(1, self._concurrency - len(self._running))
        entries = await read_entries(
            connection, "XREADGROUP", "GROUP", EXECUTIONS_GROUP, self.name, "COUNT", free, "BLOCK", self._block_ms,
            "STREAMS", self._stream, ">",
        )  # fmt: skip
        for entry in entries:
            self._spawn(entry, reclaimed=False)
        if entries:
            await asyncio.sleep(0)  # let what was read start before the next read goes out

    async def _reclaim(self) -> None:
        reply = await self._redis.xautoclaim(
            self._stream, EXECUTIONS_GROUP, self.name, min_idle_time=self._reclaim_after_ms, count=16
        )
        for entry in cast(list[Entry], reply[1]):
            if entry and entry[1]:
                log.info("reclaimed execution message %s left pending by another worker", entry[0].decode())
                self._spawn(entry, reclaimed=True)

    def _spawn(self, entry: Entry, *, reclaimed: bool) -> None:
        task = asyncio.create_task(self._handle(*entry, reclaimed))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _handle(self, message_id: bytes, fields: dict[bytes, bytes], reclaimed: bool) -> None:
        async with self._slots:
            try:
                request = request_decoder.decode(fields[FIELD_MESSAGE])
            except (KeyError, msgspec.DecodeError):
                log.error("dropping unreadable execution message %s", message_id.decode())
                await self._ack(message_id)
                return
            EXECUTION_ID.set(request.id)  # on every log line of this task (each message has its own)
            self._in_hand.add(message_id)
            try:
                attempt = await self._claim(request, reclaimed)
                if attempt is None:
                    await self._ack(message_id)
                else:
                    await self._run_and_hand_over(message_id, request, attempt)
            except _LeavePending:
                pass
            finally:
                self._in_hand.discard(message_id)

    async def _claim(self, request: ExecutionRequest, reclaimed: bool) -> int | None:
        """The attempt to run, or None to ack and skip. A message left pending may be an
        execution that already finished (its worker died before the ack): the service says."""
        if not reclaimed:
            if time.time() <= request.deadline:
                return 1
            log.info("execution %s read after its deadline; skipping it (the service times it out)", request.id)
            return None
        try:
            return (await self._api.claim(request, self.name)).attempt
        except ExecutionUnknown as exc:  # e.g. queued before the service lost its database: nothing to record
            log.warning("execution %s is unknown to the service (%s); acking and skipping it", request.id, exc)
        except ExecutionFinished:
            log.info("execution %s already finished; skipping", request.id)
        except EngineApiError as exc:
            log.warning("execution %s left pending for a retry: %s", request.id, exc)
            raise _LeavePending from None
        return None

    async def _run_and_hand_over(self, message_id: bytes, request: ExecutionRequest, attempt: int) -> None:
        started_at = time.time()
        notice = asyncio.get_running_loop().call_later(
            STARTED_NOTICE_S, self._notify_started, request, attempt, started_at
        )
        try:
            result = await self._run(request, attempt)
        finally:
            notice.cancel()
        result = msgspec.structs.replace(result, worker=self.name, attempt=attempt)
        report = ResultReport(id=request.id, project=request.project, grant=request.grant, result=result)
        await self._hand_over(message_id, request, report)
        self.completed += 1

    def _notify_started(self, request: ExecutionRequest, attempt: int, started_at: float) -> None:
        report = StartedReport(
            id=request.id, project=request.project, grant=request.grant, worker=self.name, attempt=attempt,
            started_at=started_at,
        )  # fmt: skip
        task = asyncio.create_task(self._send_started(report))
        self._notices.add(task)
        task.add_done_callback(self._notices.discard)

    async def _send_started(self, report: StartedReport) -> None:
        with contextlib.suppress(RedisError, OSError):  # bookkeeping: the result says the rest
            await self._redis.xadd(self._results, self._fields(report), maxlen=RESULTS_MAXLEN, approximate=True)

    async def _hand_over(self, message_id: bytes, request: ExecutionRequest, report: ResultReport) -> None:
        """Result in, request acked: both or neither. Retried while Redis is away, within the
        execution's grace; after that the message stays pending and is reclaimed (and claimed)."""
        give_up = request.deadline + RECORD_GRACE_S
        while True:
            try:
                await self._hand_overs.run(*self._hand_over_commands(message_id, report))
                return
            except (RedisError, OSError) as exc:
                if time.time() > give_up:
                    log.warning("the result of %s could not be handed over (%s)", request.id, type(exc).__name__)
                    return
                await asyncio.sleep(RECORD_RETRY_S)

    def _hand_over_commands(self, message_id: bytes, report: ResultReport) -> tuple[Command, Command]:
        """The result in and the request out, in one MULTI (the batcher's)."""
        message = report_encoder.encode(report)
        return (
            ("XADD", self._results, "MAXLEN", "~", RESULTS_MAXLEN, "*", FIELD_MESSAGE, message),
            ("XACK", self._stream, EXECUTIONS_GROUP, message_id),
        )

    @staticmethod
    def _fields(report: Report) -> Any:
        return {FIELD_MESSAGE: report_encoder.encode(report)}

    async def _keep_claimed(self) -> None:
        """Every message in hand is claimed again well before it could look abandoned: one XCLAIM
        for all of them."""
        while True:
            await asyncio.sleep(self._reclaim_after_ms / 3000)
            if self._in_hand:
                with contextlib.suppress(RedisError, OSError):
                    await self._redis.xclaim(
                        self._stream, EXECUTIONS_GROUP, self.name, 0, list(self._in_hand), justid=True
                    )

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
