"""The one writer: every change goes through here, in batches that commit together.

Handlers submit an operation (an async function of a `Transaction`); the writer task runs all
operations waiting at that moment inside one `BEGIN IMMEDIATE` transaction and one fsync, then
answers each. That is group commit: 32 concurrent PUTs cost a few fsyncs, not 32. A batch of
bookkeeping only (`durable=False`) skips the fsync.

Every event an operation emits is also an audit entry (service.store.audit), written in the same
batch and attributed to the actor of the request that submitted the operation (service.actor).

The writer is a task on the service's event loop with a plain sqlite3 connection
(service.store.inline_conn): a batch's statements run inline, tens of µs each. What would hold the
loop is elsewhere: the fsync and the checkpoints run on threads (service.store.syncer), and a
database locked by another process is waited for with asyncio sleeps. The writer used to run on
a thread of its own; that thread and the loop took turns at the GIL several times per change,
which cost about 15% of the webhook throughput (measured on this machine, session 4).

What that changes: a commit is visible to the service's readers (and so to GET, the engine
endpoint, a worker) as soon as it is made, a millisecond before its fsync; nobody is answered
before the fsync, but a power cut in that millisecond can take back a change a reader saw. And a
large transaction (deleting a big project, rotating a key over many secrets) holds the loop for
its length, where the thread only slowed it.

An operation validates before it writes, and raises an `ApiError` only before its first write:
that error is its answer and the batch goes on. Any other exception rolls the batch back and
each of its operations is retried alone, so one broken operation cannot fail its neighbours.
"""

import asyncio
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import aiosqlite
import msgspec

from contract.engine import EngineDelta, delta_encoder
from contract.events import Event, encode_event
from service.actor import CURRENT, Actor
from service.errors import ApiError, InternalError, ServiceUnavailable
from service.store.audit import NewEntry, entry_for_event, write_entries
from service.store.db import fetch_one
from service.store.inline_conn import WriterConnection, open_writer_connection
from service.store.syncer import Syncer

log = logging.getLogger("service.writer")

T = TypeVar("T")
Operation = Callable[["Transaction"], Awaitable[T]]
MAX_BATCH = 256
BUSY_RETRY_S = 0.005  # how often a locked database is tried again, up to the busy timeout


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
    commits: one per batch, not one per change.
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
        self._db_path, self._busy_timeout_s = db_path, busy_timeout_ms / 1000
        self._on_commit, self._on_crash = on_commit, on_crash
        self._conn: aiosqlite.Connection = cast(aiosqlite.Connection, None)  # set by start()
        self._raw: WriterConnection | None = None
        self._syncer = Syncer(db_path)
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue()  # None: stop
        self._runner: asyncio.Task[None] | None = None
        self._stopping = False
        self._next_seq = 1
        self._published_upto = 0
        self._cleaned_upto = 0
        self.on_batch: Callable[[int, float], None] | None = None  # (operations, seconds), for metrics

    async def start(self) -> None:
        """Open the connection and start taking operations."""
        self._raw = open_writer_connection(self._db_path)
        self._conn = cast(aiosqlite.Connection, self._raw)  # the slice of aiosqlite's API operations use
        row = self._raw.raw.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
        self._next_seq = (int(row[0]) if row else 0) + 1
        self._runner = asyncio.create_task(self.run(), name="sqlite-writer")
        self._runner.add_done_callback(self._ended)

    async def stop(self, timeout_s: float = 10.0) -> None:
        """The batch running now finishes; what is queued behind it, or submitted from now on, fails."""
        if not self._stopping:
            self._stopping = True
            self._queue.put_nowait(None)
        if self._runner is not None and not self._runner.done():
            await asyncio.wait({self._runner}, timeout=timeout_s)
            if not self._runner.done():
                self._runner.cancel()
                await asyncio.wait({self._runner})  # its end (a crash included) is _ended's to report
        self._fail_queued()
        await asyncio.to_thread(self._syncer.close)
        if self._raw is not None:
            self._raw.close()
            self._raw = None

    def _ended(self, runner: "asyncio.Task[None]") -> None:
        if runner.cancelled():
            return
        exc = runner.exception()
        if exc is not None:
            self._stopping = True
            self._fail_queued()
            if self._on_crash is not None:
                self._on_crash(exc)
            else:
                log.critical("the writer stopped on an unexpected error", exc_info=exc)

    def _fail_queued(self) -> None:
        """Operations queued that the stopped writer will never run: their callers hear so."""
        while not self._queue.empty():
            pending = self._queue.get_nowait()
            if pending is not None:
                _settle(pending.future, _stopped())

    async def submit(self, operation: Operation[T], *, durable: bool = True) -> T:
        """Run `operation` in the next batch. `durable=False` for bookkeeping that may be lost with
        the machine (never with the process): the batch then commits without an fsync of its own."""
        return await self.submit_nowait(operation, durable=durable)

    def submit_nowait(self, operation: Operation[T], *, durable: bool = True) -> "asyncio.Future[T]":
        """`submit`, without waiting. What is submitted before the writer's next turn of the loop
        runs in one batch, in submission order."""
        if self._runner is None:
            raise RuntimeError("the writer is not started")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        if self._stopping:
            future.set_exception(_stopped())
        else:
            self._queue.put_nowait(_Pending(operation, future, durable, CURRENT.get()))
        return future

    def mark_published(self, seq: int) -> None:
        """Outbox rows up to `seq` may go; they are deleted with the next batch (no fsync of their own)."""
        self._published_upto = max(self._published_upto, seq)

    @property
    def cleanup_due(self) -> bool:
        return self._published_upto > self._cleaned_upto

    async def run(self) -> None:
        """Batch after batch until stop(): what is queued then, it leaves to stop() to fail."""
        while (batch := await self._next_batch()) is not None:
            started = time.perf_counter()
            try:
                await self._run_batch(batch)
            except BaseException:  # cancelled by stop(), or a failed fsync: nobody is left waiting
                self._committed([], [(pending.future, _interrupted()) for pending in batch])
                raise
            if self.on_batch is not None:
                self.on_batch(len(batch), time.perf_counter() - started)

    async def _next_batch(self) -> list[_Pending] | None:
        first = await self._queue.get()
        if first is None or self._stopping:
            if first is not None:
                _settle(first.future, _stopped())
            return None
        # What this turn of the loop scheduled goes first (a request's XADD leaves before its
        # row's INSERT runs: the row only has to be queued first), and joins the batch.
        await asyncio.sleep(0)
        batch = [first]
        while len(batch) < MAX_BATCH and not self._queue.empty() and not self._stopping:
            pending = self._queue.get_nowait()
            assert pending is not None  # stop() sets _stopping before it queues None
            batch.append(pending)
        return batch

    async def _run_batch(self, batch: list[_Pending]) -> None:
        durable = any(pending.durable for pending in batch)
        try:
            outcomes, events = await self._commit(batch)
        except sqlite3.OperationalError as exc:
            self._committed([], [(pending.future, _busy_error(exc)) for pending in batch])
            return
        except Exception:
            if len(batch) == 1:
                log.exception("a write failed and was rolled back")
                failed = InternalError("the change could not be saved; it has been logged")
                self._committed([], [(batch[0].future, failed)])
                return
            for pending in batch:  # find the culprit: each alone
                await self._run_batch([pending])
            return
        self._syncer.wrote()
        settled = [(pending.future, outcome) for pending, outcome in zip(batch, outcomes, strict=True)]
        if durable:
            await self._sync(settled)
        self._committed(events, settled)

    async def _sync(self, settled: list[tuple["asyncio.Future[Any]", Any]]) -> None:
        """The batch is on the disk before anyone hears of it. If the disk refuses, nothing said
        about durability holds any more: the batch fails and the writer stops (on_crash)."""
        try:
            await self._syncer.sync()
        except OSError as exc:
            failed = InternalError("the change could not be made durable; the service stops")
            self._committed([], [(future, failed) for future, _ in settled])
            raise RuntimeError("fdatasync of the WAL failed") from exc

    def _committed(self, events: list[OutboxEntry], settled: list[tuple["asyncio.Future[Any]", Any]]) -> None:
        """The events first, so the relay publishes as the answers go out."""
        if events:
            self._on_commit(events)
        for future, outcome in settled:
            _settle(future, outcome)

    async def _commit(self, batch: list[_Pending]) -> tuple[list[Any], list[OutboxEntry]]:
        await self._begin()
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

    async def _begin(self) -> None:
        """BEGIN IMMEDIATE, waiting for a lock someone else holds with asyncio sleeps (the
        connection's busy timeout is zero, so SQLite itself never waits on the loop)."""
        deadline = time.monotonic() + self._busy_timeout_s
        while True:
            try:
                await self._conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or time.monotonic() >= deadline:
                    raise
            await asyncio.sleep(BUSY_RETRY_S)


def _stopped() -> InternalError:
    return InternalError("the database writer has stopped; nothing was saved")


def _interrupted() -> InternalError:
    return InternalError("the database writer stopped while saving this change; it may not have been saved")


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


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


def _busy_error(exc: sqlite3.OperationalError) -> ApiError:
    log.warning("write refused by SQLite: %s", exc)
    if _is_busy(exc):
        return ServiceUnavailable("the database is busy; try again shortly", code="database_busy")
    return ServiceUnavailable("the database cannot take writes right now", code="database_unavailable")


async def flush_cleanup(writer: Writer) -> None:
    """Run an empty batch so published outbox rows are deleted even when no change comes."""
    await writer.submit(_noop, durable=False)
