"""The outbox relay: publishes committed events to the events stream, in order, at least once.

The writer hands each committed batch over in memory, so the happy path publishes right after
the commit with no polling delay. Rows not yet published at start-up are read from the outbox.
While Redis is down the relay keeps its queue and retries with backoff; before each publish
after a failure it reads the stream's newest entry, so what already went out is not sent twice.

An entry that carries an engine delta (a `secret.put`'s new ciphertext) has it SET under
`<prefix>:engine-delta:<origin>:<seq>` for a minute, in the same pipeline just before its XADD:
Redis runs one connection's commands in order, so the key exists before any reader sees the
event. Workers patch their snapshot from it (worker.listener); it holds ciphertext, never a key.
"""

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import cast

import aiosqlite
import redis.asyncio as redis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError
from redis.typing import EncodableT, FieldT

from contract.events import summary_fields
from contract.streams import FIELD_EVENT, FIELD_ORIGIN, FIELD_SEQ, Streams
from service.store.writer import OutboxEntry

log = logging.getLogger("service.relay")

MAX_PER_ROUND = 500
DELTA_TTL_MS = 60_000  # ample for a listener that follows the stream; a later one fetches instead
DELTA_MAX_BYTES = 16_384  # a bigger value goes by fetch, so bursts of big values cannot fill Redis
BACKOFF_START_S = 0.05
BACKOFF_MAX_S = 2.0


class OutboxRelay:
    def __init__(
        self,
        client: redis.Redis,
        stream: str,
        origin: str,
        maxlen: int,
        on_published: Callable[[int], None],
    ) -> None:
        self._redis = client
        self._stream = stream
        self._keys = Streams.around(stream)
        self._origin_name, self._origin = origin, origin.encode()
        self._maxlen = maxlen
        self._on_published = on_published
        self._pending: deque[OutboxEntry] = deque()
        self._wake = asyncio.Event()
        self._must_check_stream = True
        self.published_total = 0
        self.connected = False

    @property
    def backlog(self) -> int:
        return len(self._pending)

    def oldest_pending_seq(self) -> int | None:
        return self._pending[0].seq if self._pending else None

    def oldest_pending(self) -> OutboxEntry | None:
        return self._pending[0] if self._pending else None

    async def load_unpublished(self, conn: aiosqlite.Connection) -> None:
        async with conn.execute("SELECT seq, payload FROM outbox ORDER BY seq") as cursor:
            rows = list(await cursor.fetchall())
        self._pending.extend(OutboxEntry(int(seq), bytes(payload)) for seq, payload in rows)
        if rows:
            log.info("outbox: %d event(s) from before start-up to publish", len(rows))
            self._wake.set()

    def committed(self, entries: list[OutboxEntry]) -> None:
        """Called by the writer right after a commit."""
        self._pending.extend(entries)
        self._wake.set()

    async def run(self) -> None:
        backoff = BACKOFF_START_S
        while True:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
            try:
                await self._publish_round()
                backoff = BACKOFF_START_S
            except (RedisError, OSError) as exc:
                self._note_failure(exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def _publish_round(self) -> None:
        if self._must_check_stream:
            await self._skip_already_published()
        batch = [self._pending[i] for i in range(min(MAX_PER_ROUND, len(self._pending)))]
        if not batch:  # everything pending was in the stream already (the process died before its cleanup)
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for entry in batch:
                self._queue(pipe, entry)
            await pipe.execute()
        for _ in batch:
            self._pending.popleft()
        self.published_total += len(batch)
        self._on_published(batch[-1].seq)
        if not self.connected:
            log.info("relay: publishing to %s", self._stream)
            self.connected = True

    def _queue(self, pipe: Pipeline, entry: OutboxEntry) -> None:
        """The entry's engine delta first, so it is readable by the time its event is."""
        if entry.delta is not None and len(entry.delta) <= DELTA_MAX_BYTES:
            pipe.set(self._keys.engine_delta(self._origin_name, entry.seq), entry.delta, px=DELTA_TTL_MS)
        pipe.xadd(self._stream, self._fields(entry), maxlen=self._maxlen, approximate=True)

    def _fields(self, entry: OutboxEntry) -> dict[FieldT, EncodableT]:
        fields: dict[FieldT, EncodableT] = {key: value for key, value in summary_fields(entry.payload).items()}
        fields.update({FIELD_SEQ: str(entry.seq), FIELD_ORIGIN: self._origin, FIELD_EVENT: entry.payload})
        return fields

    async def _skip_already_published(self) -> None:
        newest = cast(list[tuple[bytes, dict[bytes, bytes]]], await self._redis.xrevrange(self._stream, count=1))
        # Only entries of this database count: the stream may hold another database's events.
        if newest and newest[0][1].get(FIELD_ORIGIN) == self._origin:
            last_seq = int(newest[0][1][FIELD_SEQ])
            while self._pending and self._pending[0].seq <= last_seq:
                self._pending.popleft()
            self._on_published(last_seq)
        self._must_check_stream = False

    def _note_failure(self, exc: BaseException) -> None:
        if self.connected:
            log.warning(
                "relay: Redis unreachable (%s); %d event(s) wait in the outbox", type(exc).__name__, len(self._pending)
            )
        self.connected = False
        self._must_check_stream = True
