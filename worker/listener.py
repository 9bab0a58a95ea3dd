"""Follows the events stream and invalidates what changed.

Plain XREAD from a remembered position, so every worker sees every event. Whenever the worker
cannot be sure it saw every event (a reconnect, a sequence gap, events of another database)
it drops everything it caches, because it cannot know what changed.

The listener has its own connection, with retries off: a failure must reach this loop so the
caches are dropped, and the blocking read stays well under the socket timeout.
"""

import asyncio
import logging
import time
from collections.abc import Callable
from typing import cast

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from contract.events import ChangeEvent, ProjectDeleted, UnknownEvent, decode_event
from contract.streams import FIELD_EVENT, FIELD_ORIGIN, FIELD_SEQ
from worker.snapshots import SnapshotCache

log = logging.getLogger("worker.listener")

StreamEntry = tuple[bytes, dict[bytes, bytes]]
StreamReply = list[tuple[bytes, list[StreamEntry]]] | None

BACKOFF_START_S = 0.05
BACKOFF_MAX_S = 2.0


def listener_client(redis_url: str, block_ms: int) -> redis.Redis:
    return redis.Redis.from_url(
        redis_url,
        socket_connect_timeout=2,
        socket_timeout=block_ms / 1000 + 4,
        retry=Retry(NoBackoff(), 0),
    )


class ChangeListener:
    def __init__(self, client: redis.Redis, stream: str, cache: SnapshotCache, *, block_ms: int = 1000) -> None:
        self._redis = client
        self._stream = stream
        self._cache = cache
        self._block_ms = block_ms
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
        self._invalidate(decode_event(fields[FIELD_EVENT]))

    def _invalidate(self, event: ChangeEvent | UnknownEvent) -> None:
        if isinstance(event, ProjectDeleted):
            self._cache.forget(event.project)
        else:
            self._cache.invalidate(event.project, event.revision)
        self.events_seen += 1
        self.last_lag_s = max(0.0, time.time() - event.committed_at) if event.committed_at else 0.0
        if self.observe_lag is not None and event.committed_at:
            self.observe_lag(self.last_lag_s)
        log.debug("%s %s revision %d", getattr(event, "type", type(event).__name__), event.project, event.revision)
        if self.on_event is not None:
            self.on_event(event)
