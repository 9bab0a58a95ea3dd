"""Records what workers report on the results stream: executions started and finished.

The service reads `<prefix>:results` through a consumer group of its own, so a report read just
before a crash is read again after it (its pending entries first), and XACKs a report only once
the writer committed it. The reports of one read are submitted together, so they share a batch
and its one fsync, and the next read does not wait for that commit. A webhook waiting for a
result is answered as soon as the result is read (reads of that execution's record wait until it
is written); a dashboard run, once it is written.

A report the service refuses for good (an unknown grant, a result after the first one) is logged
and acked; one it could not commit (a busy or failing database) stays pending and is read again.
"""

import asyncio
import logging
from typing import Final

import msgspec
import redis.asyncio as redis
from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.typing import EncodableT

from contract import redis_clients
from contract.executions import FIELD_MESSAGE, RESULTS_GROUP, Report, ResultReport, StartedReport, report_decoder
from contract.groups import ensure_group
from contract.stream_reads import Entry, own_connection, read_entries
from contract.tasks import cancel_and_wait
from service.auth import hash_token
from service.dispatch import Dispatcher
from service.errors import ApiError
from service.store.executions import mark_started, record_result
from service.store.writer import Writer

log = logging.getLogger("service.results")

CONSUMER: Final = "service"  # one service per database and prefix, so one consumer
READ_COUNT: Final = 256
MAX_BATCHES_IN_HAND: Final = 32
BLOCK_MS: Final = 1000
BACKOFF_START_S: Final = 0.05
BACKOFF_MAX_S: Final = 2.0


def results_client(redis_url: str) -> redis.Redis:
    """Its own connection: the blocking read stays well under the socket timeout, and a failure
    reaches the read loop (retries off) instead of stalling it."""
    return redis_clients.from_url(
        redis_url, socket_connect_timeout=2, socket_timeout=BLOCK_MS / 1000 + 4, retry=Retry(NoBackoff(), 0)
    )


class ResultsReader:
    def __init__(self, client: redis.Redis, stream: str, writer: Writer, dispatcher: Dispatcher) -> None:
        self._redis, self._stream = client, stream
        self._writer, self._dispatcher = writer, dispatcher
        self._recording: set[asyncio.Task[None]] = set()  # batches being written, then acked
        self._read_again = False  # a report stayed pending: read the pending ones again
        self.recorded = 0

    async def run(self) -> None:
        try:
            await self._follow()
        finally:
            for task in list(self._recording):
                await cancel_and_wait(task)  # what they held stays pending: read after a restart

    async def _follow(self) -> None:
        backoff = BACKOFF_START_S
        while True:
            try:
                await self._ensure_group()
                await self._settle_recording()
                async with own_connection(self._redis) as connection:
                    await self._read_pending(connection)
                    backoff = BACKOFF_START_S
                    while not self._read_again:
                        await self._read_new(connection)
            except (RedisError, OSError) as exc:
                log.warning("results stream unavailable (%s); retrying", type(exc).__name__)
            await asyncio.sleep(backoff)  # after a failure, or a report that must be read again
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def _settle_recording(self) -> None:
        """Before pending reports are read again, the batches in hand finish (no report twice)."""
        if self._recording:
            await asyncio.wait(self._recording)
        self._read_again = False

    async def _ensure_group(self) -> None:
        await ensure_group(self._redis, self._stream, RESULTS_GROUP)

    async def _read_pending(self, connection: Connection) -> None:
        """Reports read before (by an earlier run of the service, or kept for a retry)."""
        after = b"0"
        while entries := await self._read(connection, after):
            await self._record_all(entries)
            after = entries[-1][0]

    async def _read_new(self, connection: Connection) -> None:
        """The next reports; they are written (and acked) while the next read waits, so a slow
        commit does not hold back the answers of the results behind it."""
        if len(self._recording) >= MAX_BATCHES_IN_HAND:
            await asyncio.wait(self._recording, return_when=asyncio.FIRST_COMPLETED)
        entries = await self._read(connection, b">", "BLOCK", BLOCK_MS)
        if entries:
            task = asyncio.create_task(self._record_batch(entries))
            self._recording.add(task)
            task.add_done_callback(self._recording.discard)

    async def _record_batch(self, entries: list[Entry]) -> None:
        try:
            if not await self._record_all(entries):
                self._read_again = True
        except (RedisError, OSError) as exc:  # the XACK: the reports stay pending, and are read again
            log.warning("results not acked (%s); they will be read again", type(exc).__name__)
            self._read_again = True

    async def _read(self, connection: Connection, after: bytes, *block: EncodableT) -> list[Entry]:
        """Reports after `after` (b">": new ones), waiting as `block` says (nothing: not at all)."""
        return await read_entries(
            connection, "XREADGROUP", "GROUP", RESULTS_GROUP, CONSUMER, "COUNT", READ_COUNT, *block,
            "STREAMS", self._stream, after,
        )  # fmt: skip

    async def _record_all(self, entries: list[Entry]) -> bool:
        done = await asyncio.gather(*(self._record(fields) for _id, fields in entries))
        finished = [entry_id for (entry_id, _fields), ok in zip(entries, done, strict=True) if ok]
        if finished:
            await self._redis.xack(self._stream, RESULTS_GROUP, *finished)
        return len(finished) == len(entries)

    async def _record(self, fields: dict[bytes, bytes]) -> bool:
        """True when the report is settled: recorded, refused for good, or unreadable."""
        try:
            report = report_decoder.decode(fields[FIELD_MESSAGE])
        except (KeyError, msgspec.DecodeError):
            log.error("dropping an unreadable execution report")
            return True
        try:
            await self._apply(report)
        except ApiError as exc:
            if exc.status >= 500:
                log.warning("report on execution %s not recorded yet: %s", report.id, exc.message)
                return False
            log.info("report on execution %s refused: %s", report.id, exc.error_code)
        return True

    async def _apply(self, report: Report) -> None:
        grant_hash = hash_token(report.grant)
        if isinstance(report, ResultReport):
            with self._dispatcher.recording(report.id, report.project):
                self._dispatcher.reported(report.id, grant_hash, report.result)  # a webhook is answered now
                record = await self._writer.submit(record_result(report.project, report.id, grant_hash, report.result))
            self._dispatcher.resolve(record)
            self.recorded += 1
        elif isinstance(report, StartedReport):
            # Bookkeeping: a start lost with the machine is shown by the result that follows.
            await self._writer.submit(mark_started(report.project, report.id, grant_hash, report), durable=False)
