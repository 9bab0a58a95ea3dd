"""The writer: operations submitted together run in the order they were submitted, and a write
submitted after the writer stopped fails at once with a clear error."""

import asyncio
import errno
import os
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from contract.events import ProjectCreated
from service.errors import InternalError, ServiceUnavailable
from service.store.db import connect
from service.store.migrations import migrate
from service.store.writer import OutboxEntry, Transaction, Writer

pytestmark = pytest.mark.timeout(20)


BUSY_TIMEOUT_MS = 1000


@pytest.fixture
async def db_path(tmp_path: Path) -> Path:
    path = tmp_path / "writer.db"
    setup = await connect(path, busy_timeout_ms=BUSY_TIMEOUT_MS)
    await migrate(setup)
    await setup.close()
    return path


@pytest.fixture
async def writer(db_path: Path) -> AsyncIterator[Writer]:
    writer = Writer(db_path, on_commit=lambda entries: None, busy_timeout_ms=BUSY_TIMEOUT_MS)
    await writer.start()
    yield writer
    await writer.stop()


def remembering(key: str):  # type: ignore[no-untyped-def]
    async def operation(tx: Transaction) -> str:
        await tx.conn.execute("INSERT INTO meta (key, value) VALUES (?, 'x')", (key,))
        return key

    return operation


def announcing(project: str):  # type: ignore[no-untyped-def]
    """A change with an event (for a project that does not exist: no audit row, the outbox row stays)."""

    async def operation(tx: Transaction) -> str:
        await tx.emit(ProjectCreated(seq=0, project=project, revision=1))
        return project

    return operation


def wal_of(db_path: Path) -> Path:
    return Path(f"{db_path}-wal").resolve()


def synced_files(monkeypatch: pytest.MonkeyPatch, *, hold: threading.Event | None = None) -> list[Path]:
    """The files fdatasync is called on from now on; with `hold`, each call waits for it first."""
    synced: list[Path] = []
    real = os.fdatasync

    def recording(fd: int) -> None:
        if hold is not None:
            hold.wait(5)
        synced.append(Path(os.readlink(f"/proc/self/fd/{fd}")))
        real(fd)

    monkeypatch.setattr(os, "fdatasync", recording)
    return synced


def appending(ran: list[int], n: int):  # type: ignore[no-untyped-def]
    async def operation(tx: Transaction) -> int:
        ran.append(n)
        return n

    return operation


async def test_operations_submitted_together_run_in_submission_order(writer: Writer) -> None:
    ran: list[int] = []
    futures = [writer.submit_nowait(appending(ran, n), durable=False) for n in range(200)]
    assert await asyncio.gather(*futures) == list(range(200))
    assert ran == list(range(200))


async def test_a_write_after_the_writer_stopped_fails_with_a_clear_error(writer: Writer) -> None:
    await writer.stop()
    with pytest.raises(InternalError, match="writer has stopped"):
        await asyncio.wait_for(writer.submit(appending([], 1)), 5)


async def test_a_write_submitted_as_the_writer_stops_fails_instead_of_waiting(writer: Writer) -> None:
    submitted = writer.submit_nowait(appending([], 1))  # queued; the writer has not taken it yet
    await writer.stop()
    with pytest.raises(InternalError, match="writer has stopped"):
        await asyncio.wait_for(submitted, 5)


async def test_a_durable_write_is_answered_once_the_wal_is_fsynced(
    db_path: Path, writer: Writer, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced = synced_files(monkeypatch)
    assert await writer.submit(remembering("bookkeeping"), durable=False) == "bookkeeping"
    assert synced == []  # no fsync of its own
    assert await writer.submit(remembering("change")) == "change"
    assert synced == [wal_of(db_path)]


async def test_a_durable_change_waits_for_its_fsync_and_the_loop_does_not(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    published: list[list[OutboxEntry]] = []
    writer = Writer(db_path, on_commit=published.append, busy_timeout_ms=BUSY_TIMEOUT_MS)
    await writer.start()
    hold = threading.Event()
    synced_files(monkeypatch, hold=hold)
    try:
        answer = asyncio.ensure_future(writer.submit(announcing("change")))
        waited = time.monotonic()
        await asyncio.sleep(0.2)  # the loop turns while the fsync is held
        assert time.monotonic() - waited < 1.0
        assert not answer.done() and published == []  # committed, not on the disk: nobody hears of it
        hold.set()
        assert await asyncio.wait_for(answer, 5) == "change"
        assert len(published) == 1  # the event goes to the relay with the answer
    finally:
        hold.set()
        await writer.stop()


async def test_a_change_whose_fsync_outlasts_stop_is_answered_that_it_may_not_be_saved(
    writer: Writer, monkeypatch: pytest.MonkeyPatch
) -> None:
    hold = threading.Event()
    synced_files(monkeypatch, hold=hold)
    answer = asyncio.ensure_future(writer.submit(remembering("change")))
    await asyncio.sleep(0.05)  # its batch waits for the fsync; this one queues behind it
    behind = writer.submit_nowait(remembering("behind"))
    stopping = asyncio.ensure_future(writer.stop(timeout_s=0.2))
    await asyncio.sleep(0.5)  # stop gave up waiting for the held fsync
    hold.set()
    await asyncio.wait_for(stopping, 5)  # and does not raise
    with pytest.raises(InternalError, match="may not have been saved"):
        await answer
    with pytest.raises(InternalError, match="writer has stopped"):
        await behind


async def test_a_failed_fsync_fails_its_batch_and_stops_the_writer(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    crashes: list[BaseException] = []
    writer = Writer(db_path, on_commit=lambda entries: None, busy_timeout_ms=BUSY_TIMEOUT_MS, on_crash=crashes.append)
    await writer.start()

    def failing(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", failing)
    try:
        with pytest.raises(InternalError, match="could not be made durable"):
            await writer.submit(remembering("change"))
        await asyncio.sleep(0.05)  # the writer's task ends
        assert len(crashes) == 1
        with pytest.raises(InternalError, match="writer has stopped"):
            await writer.submit(remembering("later"), durable=False)
    finally:
        monkeypatch.undo()
        await writer.stop()


async def test_a_locked_database_is_waited_for_on_the_loop_then_refused(db_path: Path, writer: Writer) -> None:
    """Another process holds the write lock: the write waits the busy timeout without holding
    the loop, is refused with 503 database_busy, and the next one goes through once it is free."""
    other = sqlite3.connect(db_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        answer = asyncio.ensure_future(writer.submit(remembering("locked out"), durable=False))
        longest_gap, started = 0.0, time.monotonic()
        while not answer.done() and time.monotonic() - started < 5:
            tick = time.monotonic()
            await asyncio.sleep(0.01)
            longest_gap = max(longest_gap, time.monotonic() - tick)
        with pytest.raises(ServiceUnavailable) as refused:
            await answer
        assert refused.value.error_code == "database_busy"
        assert BUSY_TIMEOUT_MS / 1000 <= time.monotonic() - started < 3
        assert longest_gap < 0.5  # SQLite never waited on the loop (it would for the whole busy timeout)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert await writer.submit(remembering("after"), durable=False) == "after"
