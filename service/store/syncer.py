"""What the writer leaves off the event loop: fsyncs and checkpoints, each on a thread of its own.

The writer commits with synchronous = NORMAL: a commit is in the WAL, atomic and safe from a
process crash, but not yet on the disk. A batch that must survive a power cut awaits `sync()`,
an fdatasync of the WAL file: what synchronous = FULL does inside COMMIT (an fsync flushes the
file, whichever descriptor asks for it), without holding the loop for it. The descriptor is opened
once and kept: Linux reports a write-back error once to each open file, so a descriptor opened
after an error (say, seen first by a checkpoint) would not hear of it.

Checkpoints copy the WAL into the database file and fsync both. SQLite would run them inside a
commit every 1,000 pages, on the loop; here they run on their own thread and connection, at most
once a `checkpoint_every_s`, when writes came since the last. PASSIVE: a checkpoint never waits
for a lock and never holds up the writer.
"""

import asyncio
import logging
import os
import sqlite3
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Final

log = logging.getLogger("service.writer")

CHECKPOINT_EVERY_S: Final = 1.0


@dataclass(frozen=True, slots=True)
class Checkpointed:
    """What a checkpoint did: frames in the WAL, frames copied into the database file."""

    busy: bool
    wal_frames: int
    copied: int


class Syncer:
    def __init__(self, db_path: Path, *, checkpoint_every_s: float = CHECKPOINT_EVERY_S) -> None:
        self._db_path, self._wal_path = db_path, Path(f"{db_path}-wal")
        self._checkpoint_every_s = checkpoint_every_s
        self._sync_thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-sync")
        self._checkpoint_thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-checkpoint")
        self._checkpointer: sqlite3.Connection | None = None  # opened on the checkpoint thread
        self._wal_fd: int | None = None  # opened on the sync thread, at the first sync
        self._checkpoint: Future[Checkpointed] | None = None
        self._next_checkpoint_at = 0.0

    async def sync(self) -> None:
        """Every commit so far is on the disk once this returns (raises OSError if the disk says no)."""
        await asyncio.get_running_loop().run_in_executor(self._sync_thread, self._fdatasync)

    def _fdatasync(self) -> None:
        if self._wal_fd is None:  # after a commit: the WAL exists, and lives as long as the writer's connection
            self._wal_fd = os.open(self._wal_path, os.O_RDWR)
        os.fdatasync(self._wal_fd)

    def wrote(self) -> "Future[Checkpointed] | None":
        """Called after each commit: starts a checkpoint when one is due and none is running (and
        returns it)."""
        now = time.monotonic()
        if now < self._next_checkpoint_at or (self._checkpoint is not None and not self._checkpoint.done()):
            return None
        self._next_checkpoint_at = now + self._checkpoint_every_s
        self._checkpoint = self._checkpoint_thread.submit(self._run_checkpoint)
        self._checkpoint.add_done_callback(_log_failure)
        return self._checkpoint

    def _run_checkpoint(self) -> "Checkpointed":
        if self._checkpointer is None:  # used by this thread only, closed by close() once it ended
            self._checkpointer = sqlite3.connect(self._db_path, timeout=0, check_same_thread=False)
        busy, wal_frames, copied = self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return Checkpointed(busy=bool(busy), wal_frames=wal_frames, copied=copied)

    def close(self) -> None:
        """Waits for a running fsync or checkpoint, then closes the checkpoint connection."""
        self._sync_thread.shutdown(wait=True)
        self._checkpoint_thread.shutdown(wait=True)
        if self._checkpointer is not None:
            self._checkpointer.close()
        if self._wal_fd is not None:
            os.close(self._wal_fd)
            self._wal_fd = None


def _log_failure(done: "Future[Checkpointed]") -> None:
    exc = done.exception()
    if exc is not None:  # the next one tries again; meanwhile the WAL grows
        log.warning("a checkpoint failed: %s", exc)
