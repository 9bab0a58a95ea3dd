"""The one writer: every change goes through here, in batches that commit together.

Handlers submit an operation (an async function of a `Transaction`); the writer task runs all
operations waiting at that moment inside one `BEGIN IMMEDIATE` transaction and one fsync, then
answers each. That is group commit: 32 concurrent PUTs cost a few fsyncs, not 32.

Every event an operation emits is also an audit entry (service.store.audit), written in the same
batch and attributed to the actor of the request that submitted the operation (service.actor).

The writer runs on its own thread, with its own event loop and a plain sqlite3 connection
(service.store.thread_conn), so an operation's statements run inline: no round trip to a
connection thread per statement. Handlers on the main loop submit and await as before; answers
and committed events come back to the main loop with `call_soon_threadsafe`.

An operation validates before it writes, and raises an `ApiError` only before its first write:
that error is its answer and the batch goes on. Any other exception rolls the batch back and
each of its operations is retried alone, so one broken operation cannot fail its neighbours.
"""

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import aiosqlite
import msgspec

from contract import loops
from contract.engine import EngineDelta, delta_encoder
from contract.events import Event, encode_event
from service.actor import CURRENT, Actor
from service.errors import ApiError, InternalError, ServiceUnavailable
from service.store.audit import NewEntry, entry_for_event, write_entries
from service.store.db import fetch_one
from service.store.thread_conn import open_thread_connection

log = logging.getLogger("service.writer")

T = TypeVar("T")
Operation = Callable[["Transaction"], Awaitable[T]]
MAX_BATCH = 256


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """`delta`: the encoded engine delta (contract.engine.EngineDelta), in memory only: the outbox
    table keeps the event alone, so an entry re-read after a restart has none (workers fetch)."""

    seq: int
    payload: bytes
    delta: bytes | None = None


@dataclass(slots=True)
class Transaction:
    """What an operation sees: the connection, and `emit` to add an event to the outbox.

    Emitted events are written to the outbox together, in one statement just before the batch
    commits (each aiosqlite statement is a round trip to the writer thread: one per batch, not
    one per change).
    """

    conn: aiosqlite.Connection
    next_seq: int
    events: list[OutboxEntry] = field(default_factory=list)
    actor: Actor | None = None  # who submitted the operation running now
    audit: list[NewEntry] = field(default_factory=list)

    async def emit(self, event: Event, *, delta: EngineDelta | None = None) -> Event:
        """`delta`: the change's effect on the engine snapshot, when the operation knows it whole."""
        stamped = msgspec.structs.replace(event, seq=self.next_seq, committed_at=time.time())
        encoded_delta = None if delta is None else delta_encoder.encode(delta)
        self.events.append(OutboxEntry(self.next_seq, encode_event(stamped), encoded_delta))
        self.next_seq += 1
        entry = entry_for_event(stamped, self.actor)
        if entry is not None:
            self.audit.append(entry)
        return stamped

    def record(self, entry: NewEntry) -> None:
        """An audit entry that is not a change event (an engine read, a refused request)."""
        self.audit.append(entry)

    async def bump_revision(self, project_id: str) -> int:
        row = await fetch_one(
            self.conn, "UPDATE projects SET revision = revision + 1 WHERE id = ? RETURNING revision", (project_id,)
        )
        if row is None:
            raise LookupError(f"project {project_id!r} vanished inside a transaction")
        return int(row[0])


@dataclass(slots=True)
class _Pending:
    operation: Operation[Any]
    future: asyncio.Future[Any]
    durable: bool = True
    actor: Actor | None = None


class Writer:
    def __init__(
        self,
        db_path: Path,
        on_commit: Callable[[list[OutboxEntry]], None],
        *,
        busy_timeout_ms: int,
        on_crash: Callable[[BaseException], None] | None = None,
    ) -> None:
        self._db_path, self._busy_timeout_ms = db_path, busy_timeout_ms
        self._on_commit, self._on_crash = on_commit, on_crash
        self._conn: aiosqlite.Connection = cast(aiosqlite.Connection, None)  # set on the writer thread
        self._main: asyncio.AbstractEventLoop | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the writer thread's
        self._queue: asyncio.Queue[_Pending] | None = None
        self._outgoing: list[_Pending] = []  # submitted in this turn of the main loop, not yet handed over
        self._stopping = False
        self._runner: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None
        self._next_seq = 1
        self._published_upto = 0
        self._cleaned_upto = 0
        self._durable = True  # the connection opens with synchronous = FULL
        self.on_batch: Callable[[int, float], None] | None = None  # (operations, seconds), for metrics

    async def start(self) -> None:
        """Start the writer thread; returns once its connection is open and it takes operations."""
        self._main = asyncio.get_running_loop()
        ready: asyncio.Future[None] = self._main.create_future()
        self._thread = threading.Thread(target=self._thread_main, args=(ready,), name="sqlite-writer", daemon=True)
        self._thread.start()
        await ready

    async def stop(self) -> None:
        self._stopping = True  # what is submitted from now on fails at once (see _hand_over)
        if self._loop is not None and self._runner is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._runner.cancel)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 10)

    def _thread_main(self, ready: "asyncio.Future[None]") -> None:
        try:
            loops.run(self._serve(ready))
        except BaseException as exc:
            self._to_main(_settle, ready, exc)
            if self._on_crash is not None:
                self._to_main(self._on_crash, exc)

    async def _serve(self, ready: "asyncio.Future[None]") -> None:
        self._loop, self._queue = asyncio.get_running_loop(), asyncio.Queue()
        conn = open_thread_connection(self._db_path, busy_timeout_ms=self._busy_timeout_ms)
        try:
            self._conn = cast(aiosqlite.Connection, conn)  # the slice of aiosqlite's API operations use
            row = conn.raw.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
            self._next_seq = (int(row[0]) if row else 0) + 1
            self._runner = asyncio.current_task()
            self._to_main(_settle, ready, None)
            await self.run()
        except asyncio.CancelledError:
            return
        finally:
            conn.close()
            self._fail_queued()

    def _fail_queued(self) -> None:
        """Operations handed over that the stopped writer will never run: their callers hear so."""
        assert self._queue is not None
        while not self._queue.empty():
            self._to_main(_settle, self._queue.get_nowait().future, _stopped())

    def _to_main(self, callback: Callable[..., Any], *args: Any) -> None:
        assert self._main is not None
        if not self._main.is_closed():
            self._main.call_soon_threadsafe(callback, *args)

    async def submit(self, operation: Operation[T], *, durable: bool = True) -> T:
        """Run `operation` in the next batch. `durable=False` for bookkeeping that may be lost with
        the machine (never with the process): the batch then commits without an fsync of its own."""
        return await self.submit_nowait(operation, durable=durable)

    def submit_nowait(self, operation: Operation[T], *, durable: bool = True) -> "asyncio.Future[T]":
        """`submit`, without waiting: handed to the writer's thread at the end of this turn of the
        main loop, with whatever else this turn submitted; operations run in submission order."""
        if self._loop is None or self._queue is None:
            raise RuntimeError("the writer is not started")
        main = asyncio.get_running_loop()
        future: asyncio.Future[T] = main.create_future()
        self._outgoing.append(_Pending(operation, future, durable, CURRENT.get()))
        if len(self._outgoing) == 1:
            main.call_soon(self._hand_over)
        return future

    def _hand_over(self) -> None:
        """Everything queued in this turn of the main loop, to the writer's thread in one wake-up
        (each wake-up costs both threads a system call and a turn at the GIL)."""
        assert self._loop is not None and self._queue is not None
        outgoing, self._outgoing = self._outgoing, []
        try:
            if self._stopping:
                raise RuntimeError("the writer is stopping")
            self._loop.call_soon_threadsafe(_put_all, self._queue, outgoing)
        except RuntimeError:  # stopping, or its loop closed (its thread ended): nothing would run these
            for pending in outgoing:
                _settle(pending.future, _stopped())

    def mark_published(self, seq: int) -> None:
        """Outbox rows up to `seq` may go; they are deleted with the next batch (no fsync of their own)."""
        self._published_upto = max(self._published_upto, seq)

    @property
    def cleanup_due(self) -> bool:
        return self._published_upto > self._cleaned_upto

    async def run(self) -> None:
        assert self._queue is not None
        while True:
            batch = [await self._queue.get()]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            started = time.perf_counter()
            await self._run_batch(batch)
            if self.on_batch is not None:
                self.on_batch(len(batch), time.perf_counter() - started)

    async def _run_batch(self, batch: list[_Pending]) -> None:
        try:
            outcomes, events = await self._commit(batch)
        except sqlite3.OperationalError as exc:
            self._fail_all(batch, _busy_error(exc))
            return
        except Exception:
            if len(batch) == 1:
                log.exception("a write failed and was rolled back")
                self._fail_all(batch, InternalError("the change could not be saved; it has been logged"))
                return
            for pending in batch:  # find the culprit: each alone
                await self._run_batch([pending])
            return
        # One hand-over to the main loop per batch: the events first, so the relay publishes as
        # the answers go out.
        self._to_main(
            self._committed,
            events,
            [(pending.future, outcome) for pending, outcome in zip(batch, outcomes, strict=True)],
        )

    def _committed(self, events: list[OutboxEntry], settled: list[tuple["asyncio.Future[Any]", Any]]) -> None:
        if events:
            self._on_commit(events)
        for future, outcome in settled:
            _settle(future, outcome)

    async def _commit(self, batch: list[_Pending]) -> tuple[list[Any], list[OutboxEntry]]:
        await self._begin(durable=any(pending.durable for pending in batch))
        tx = Transaction(self._conn, self._next_seq)
        try:
            await self._cleanup_outbox()
            outcomes = []
            for pending in batch:
                tx.actor = pending.actor
                outcomes.append(await _attempt(pending.operation, tx))
            if tx.audit:
                await write_entries(self._conn, tx.audit)
            if tx.events:
                await self._conn.executemany(
                    "INSERT INTO outbox (seq, payload) VALUES (?, ?)", [(e.seq, e.payload) for e in tx.events]
                )
            await self._conn.execute("COMMIT")
        except BaseException:
            await self._conn.rollback()
            raise
        self._next_seq = tx.next_seq
        return outcomes, tx.events

    async def _cleanup_outbox(self) -> None:
        if self.cleanup_due:
            upto = self._published_upto
            await self._conn.execute("DELETE FROM outbox WHERE seq <= ?", (upto,))
            self._cleaned_upto = upto

    async def _begin(self, *, durable: bool) -> None:
        """FULL fsyncs the WAL at commit; NORMAL leaves that to the next FULL commit or checkpoint:
        still atomic and safe from a process crash, lost only with the machine (power cut, kernel).
        The level can only change outside a transaction: both go in one round trip to the thread."""
        if durable == self._durable:
            await self._conn.execute("BEGIN IMMEDIATE")
            return
        await self._conn.executescript(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}; BEGIN IMMEDIATE;")
        self._durable = durable

    def _fail_all(self, batch: list[_Pending], error: Exception) -> None:
        self._to_main(self._committed, [], [(pending.future, error) for pending in batch])


def _stopped() -> InternalError:
    return InternalError("the database writer has stopped; nothing was saved")


def _put_all(queue: "asyncio.Queue[_Pending]", batch: list[_Pending]) -> None:
    for pending in batch:
        queue.put_nowait(pending)


async def _noop(tx: Transaction) -> None:
    return None


async def _attempt(operation: Operation[Any], tx: Transaction) -> Any:
    try:
        return await operation(tx)
    except ApiError as exc:
        return exc


def _settle(future: asyncio.Future[Any], outcome: Any) -> None:
    if future.done():  # the caller went away (client disconnected); the change stands
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def _busy_error(exc: sqlite3.OperationalError) -> ApiError:
    log.warning("write refused by SQLite: %s", exc)
    if "locked" in str(exc) or "busy" in str(exc):
        return ServiceUnavailable("the database is busy; try again shortly", code="database_busy")
    return ServiceUnavailable("the database cannot take writes right now", code="database_unavailable")


async def flush_cleanup(writer: Writer) -> None:
    """Run an empty batch so published outbox rows are deleted even when no change comes."""
    await writer.submit(_noop, durable=False)
