"""Follows the events stream and invalidates what changed.

Plain XREAD from a remembered position, so every worker sees every event. Whenever the worker
cannot be sure it saw every event (a reconnect, a sequence gap, events of another database)
it drops everything it caches, because it cannot know what changed.

The listener has its own connection, with retries off: a failure must reach this loop so the
caches are dropped, and the blocking read stays well under the socket timeout.

The relay leaves an engine delta beside each `secret.put` event (service.relay), so the cache
patches a snapshot instead of fetching it again (worker.snapshots). Each XREAD goes out in one
write with an MGET of the deltas of the next few sequence numbers: Redis runs that MGET only
once the XREAD returns, and the relay sets a delta before its event's XADD, so the deltas of the
events just read come back in the same round trip, ready to patch with no further wait. A delta
beyond that window (a burst) is read with a GET on a second connection with short timeouts.
"""

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from typing import cast

import msgspec
import redis.asyncio as redis
from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.typing import EncodableT

from contract import redis_clients
from contract.engine import EngineDelta, delta_decoder
from contract.events import ChangeEvent, SecretPut, UnknownEvent, decode_event
from contract.stream_reads import Entry, own_connection, stream_entries
from contract.streams import FIELD_EVENT, FIELD_ORIGIN, FIELD_SEQ, Streams
from worker.snapshots import MISSING_DELTA, DeltaSource, LoadDelta, SnapshotCache

log = logging.getLogger("worker.listener")


BACKOFF_START_S = 0.05
BACKOFF_MAX_S = 2.0
DELTA_TIMEOUT_S = 0.5  # a delta slower than this is not worth waiting for: the fetch takes over
READ_AHEAD = 8  # engine deltas asked for with each XREAD: one change at a time needs one, a burst more


def listener_client(redis_url: str, block_ms: int) -> redis.Redis:
    return redis_clients.from_url(
        redis_url,
        socket_connect_timeout=2,
        socket_timeout=block_ms / 1000 + 4,
        retry=Retry(NoBackoff(), 0),
    )


def delta_client(redis_url: str) -> redis.Redis:
    """For engine deltas: no retries and short timeouts, since a fetch is the fallback."""
    return redis_clients.from_url(
        redis_url,
        socket_connect_timeout=DELTA_TIMEOUT_S,
        socket_timeout=DELTA_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),
    )


class DeltaReader:
    """Reads the engine delta of one event; None whenever it cannot (gone, garbled, Redis trouble)."""

    def __init__(self, client: redis.Redis, streams: Streams, *, read_ahead: int = READ_AHEAD) -> None:
        self._redis = client
        self._streams = streams
        self.read_ahead = read_ahead  # 0: every delta read on its own, after its event

    def keys_after(self, origin: bytes, seq: int) -> dict[int, str]:
        """The delta keys of the `read_ahead` events after `seq`, by sequence number."""
        name = origin.decode(errors="replace")
        return {n: self._streams.engine_delta(name, n) for n in range(seq + 1, seq + 1 + self.read_ahead)}

    def loader(self, origin: bytes, seq: int) -> LoadDelta:
        return functools.partial(self.load, origin.decode(errors="replace"), seq)

    async def load(self, origin: str, seq: int) -> EngineDelta | None:
        try:
            payload = cast(bytes | None, await self._redis.get(self._streams.engine_delta(origin, seq)))
        except (RedisError, OSError) as exc:
            log.debug("engine delta %d unreadable (%s)", seq, type(exc).__name__)
            return None
        return decode_delta(payload, seq)


def decode_delta(payload: bytes | None, seq: int) -> EngineDelta | None:
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
        self._read_ahead: dict[int, bytes | None] = {}  # delta payloads by sequence number, from the last read
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
        async with own_connection(self._redis) as connection:
            while True:
                for entry_id, fields in await self._read(connection):
                    self._apply(fields)
                    self._last_id = entry_id
                # Let the executions this woke re-resolve before the next XREAD, whose send costs
                # the loop ~0.2 ms: that is propagation time otherwise.
                await asyncio.sleep(0)

    async def _read(self, connection: Connection) -> list[Entry]:
        """The next events, and the deltas that may go with them (see the module's docstring),
        in one write (contract.stream_reads: no pipeline object, on the way to every worker)."""
        last_id = self._last_id or b"0-0"
        commands: list[tuple[EncodableT, ...]] = [
            ("XREAD", "COUNT", 500, "BLOCK", self._block_ms, "STREAMS", self._stream, last_id)
        ]
        keys = self._read_ahead_keys()
        if keys:
            commands.append(("MGET", *keys.values()))
        await connection.send_packed_command(connection.pack_commands(commands), check_health=False)
        reply = await connection.read_response()
        if keys:
            payloads = cast(list[bytes | None], await connection.read_response())
            self._read_ahead = dict(zip(keys, payloads, strict=True))
        return stream_entries(reply)

    def _read_ahead_keys(self) -> dict[int, str]:
        if self.deltas is None or not self.deltas.read_ahead or self._origin is None:
            return {}
        return self.deltas.keys_after(self._origin, self._seq)

    async def _start_at_newest(self) -> None:
        newest = cast(list[Entry], await self._redis.xrevrange(self._stream, count=1))
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
            self._read_ahead = {}  # read for the other database's sequence numbers
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

    def _delta_loader(self, event: ChangeEvent | UnknownEvent, origin: bytes | None, seq: int) -> DeltaSource:
        """Only a `secret.put` leaves an engine delta: read already (in the window of the last read)
        or to be read."""
        if not isinstance(event, SecretPut) or self.deltas is None or origin is None:
            return None
        if seq in self._read_ahead:
            return decode_delta(self._read_ahead[seq], seq) or MISSING_DELTA
        return self.deltas.loader(origin, seq)
