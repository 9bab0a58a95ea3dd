"""Follows the events stream and invalidates what changed.

Plain XREAD from a remembered position, so every worker sees every event. Whenever the worker
cannot be sure it saw every event (a reconnect, a sequence gap, events of another database)
it drops everything it caches, because it cannot know what changed.

The listener has its own connection, with retries off: a failure must reach this loop so the
caches are dropped, and the blocking read stays well under the socket timeout. A second one,
with short timeouts, reads the engine deltas the relay leaves beside `secret.put` events
(service.relay), so the cache patches a snapshot instead of fetching it again (worker.snapshots).
"""

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from typing import cast

import msgspec
import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from contract.engine import EngineDelta, delta_decoder
from contract.events import ChangeEvent, SecretPut, UnknownEvent, decode_event
from contract.streams import FIELD_EVENT, FIELD_ORIGIN, FIELD_SEQ, Streams
from worker.snapshots import LoadDelta, SnapshotCache

log = logging.getLogger("worker.listener")

StreamEntry = tuple[bytes, dict[bytes, bytes]]
StreamReply = list[tuple[bytes, list[StreamEntry]]] | None

BACKOFF_START_S = 0.05
BACKOFF_MAX_S = 2.0
DELTA_TIMEOUT_S = 0.5  # a delta slower than this is not worth waiting for: the fetch takes over


def listener_client(redis_url: str, block_ms: int) -> redis.Redis:
    return redis.Redis.from_url(
        redis_url,
        socket_connect_timeout=2,
        socket_timeout=block_ms / 1000 + 4,
        retry=Retry(NoBackoff(), 0),
    )


def delta_client(redis_url: str) -> redis.Redis:
    """For engine deltas: no retries and short timeouts, since a fetch is the fallback."""
    return redis.Redis.from_url(
        redis_url,
        socket_connect_timeout=DELTA_TIMEOUT_S,
        socket_timeout=DELTA_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),
    )


class DeltaReader:
    """Reads the engine delta of one event; None whenever it cannot (gone, garbled, Redis trouble)."""

    def __init__(self, client: redis.Redis, streams: Streams) -> None:
        self._redis = client
        self._streams = streams

    def loader(self, origin: bytes, seq: int) -> LoadDelta:
        return functools.partial(self.load, origin.decode(errors="replace"), seq)

    async def load(self, origin: str, seq: int) -> EngineDelta | None:
        try:
            payload = await self._redis.get(self._streams.engine_delta(origin, seq))
        except (RedisError, OSError) as exc:
            log.debug("engine delta %d unreadable (%s)", seq, type(exc).__name__)
            return None
        if payload is None:
            return None
        try:
            return delta_decoder.decode(payload)
        except msgspec.DecodeError:
            log.warning("engine delta %d is not one this worker reads; fetching instead", seq)
            return None


class ChangeListener:
    def __init__(
        self,
        client: redis.Redis,
        stream: str,
        cache: SnapshotCache,
        *,
        block_ms: int = 1000,
        deltas: DeltaReader | None = None,
    ) -> None:
        self._redis = client
        self._stream = stream
        self._cache = cache
        self._block_ms = block_ms
        self.deltas = deltas  # None: every `secret.put` drops the snapshot, as before engine deltas
        self._last_id: bytes | None = None
        self._origin: bytes | None = None
        self._seq = 0
        self.connected = asyncio.Event()
        self.events_seen = 0
        self.last_lag_s = 0.0
        self.on_event: Callable[[ChangeEvent | UnknownEvent], None] | None = None
        self.observe_lag: Callable[[float], None] | None = None  # commit -> invalidation seconds, for metrics

    async def run(self) -> None:
        backoff = BACKOFF_START_S
        while True:
            try:
                await self._follow()
            except (RedisError, OSError) as exc:
                if self.connected.is_set():
                    log.warning("lost the events stream (%s); retrying", type(exc).__name__)
                self._lost("the events stream connection was lost")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
            else:
                backoff = BACKOFF_START_S

    def _lost(self, reason: str) -> None:
        self.connected.clear()
        self._cache.trusted = False
        self._cache.drop_all(reason)

    async def _follow(self) -> None:
        await self._redis.ping()  # Redis answers before the cache is trusted and "following" is logged
        if self._last_id is None:
            await self._start_at_newest()
        self._cache.drop_all("(re)connected to the events stream")
        self._cache.trusted = True
        self.connected.set()
        log.info("following %s from %s", self._stream, self._last_id.decode() if self._last_id else "?")
        while True:
            reply = cast(
                StreamReply,
                await self._redis.xread({self._stream: self._last_id or b"0-0"}, count=500, block=self._block_ms),
            )
            for _stream, entries in reply or ():
                for entry_id, fields in entries:
                    self._apply(fields)
                    self._last_id = entry_id
            if reply:
                # Let the executions this woke re-resolve (start their fetch) before the next XREAD,
                # whose send costs the loop ~0.2 ms: that is propagation time otherwise.
                await asyncio.sleep(0)

    async def _start_at_newest(self) -> None:
        newest = cast(list[StreamEntry], await self._redis.xrevrange(self._stream, count=1))
        if newest:
            entry_id, fields = newest[0]
            self._last_id, self._origin, self._seq = entry_id, fields.get(FIELD_ORIGIN), int(fields[FIELD_SEQ])
        else:
            self._last_id = b"0-0"

    def _apply(self, fields: dict[bytes, bytes]) -> None:
        origin, seq = fields.get(FIELD_ORIGIN), int(fields.get(FIELD_SEQ, b"0"))
        if origin != self._origin:
            if self._origin is not None:
                self._cache.drop_all("events from another database")
            self._origin = origin
        elif seq <= self._seq:
            return  # a duplicate from an at-least-once republish
        elif seq != self._seq + 1:
            self._cache.drop_all(f"missed events {self._seq + 1}..{seq - 1}")
        self._seq = seq
        self._apply_event(decode_event(fields[FIELD_EVENT]), origin, seq)

    def _apply_event(self, event: ChangeEvent | UnknownEvent, origin: bytes | None, seq: int) -> None:
        self._cache.apply(event, self._delta_loader(event, origin, seq))
        self.events_seen += 1
        self.last_lag_s = max(0.0, time.time() - event.committed_at) if event.committed_at else 0.0
        if self.observe_lag is not None and event.committed_at:
            self.observe_lag(self.last_lag_s)
        log.debug("%s %s revision %d", getattr(event, "type", type(event).__name__), event.project, event.revision)
        if self.on_event is not None:
            self.on_event(event)

    def _delta_loader(self, event: ChangeEvent | UnknownEvent, origin: bytes | None, seq: int) -> LoadDelta | None:
        """Only a `secret.put` leaves an engine delta to read."""
        if not isinstance(event, SecretPut) or self.deltas is None or origin is None:
            return None
        return self.deltas.loader(origin, seq)
