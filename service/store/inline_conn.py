"""The writer's plain sqlite3 connection, behind the slice of aiosqlite's API that store operations use.

The writer runs its operations on the service's event loop and every statement runs inline: no
round trip to a connection thread (aiosqlite's cost ~0.1-0.3 ms each on a small VM, several per
change), and no thread sharing the GIL with the loop. Little here waits: the connection's busy
timeout is zero (the writer waits for a lock with asyncio sleeps), it never checkpoints, and its
commits do not fsync (the writer's syncer threads do both; service.store.syncer), except the WAL
header's when the WAL starts over after a checkpoint (synchronous = NORMAL does that: about once
a second under load, one fsync on the loop).
"""

import sqlite3
from collections.abc import Callable, Generator, Iterable, Sequence
from pathlib import Path
from typing import Any


class Cursor:
    __slots__ = ("_cursor",)

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount


class Result:
    """What `execute` returns: awaitable (a cursor) and an async context manager (closing it)."""

    __slots__ = ("_cursor", "_run")

    def __init__(self, run: Callable[[], sqlite3.Cursor]) -> None:
        self._run = run
        self._cursor: Cursor | None = None

    def __await__(self) -> Generator[Any, None, Cursor]:
        return self._start().__await__()

    async def _start(self) -> Cursor:
        return Cursor(self._run())

    async def __aenter__(self) -> Cursor:
        self._cursor = Cursor(self._run())
        return self._cursor

    async def __aexit__(self, *exc_info: object) -> None:
        if self._cursor is not None:
            await self._cursor.close()


class WriterConnection:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.raw = conn

    def execute(self, sql: str, params: Iterable[Any] = ()) -> Result:
        return Result(lambda: self.raw.execute(sql, tuple(params)))

    async def execute_fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[Any]:
        return self.raw.execute(sql, tuple(params)).fetchall()

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Cursor:
        return Cursor(self.raw.executemany(sql, rows))

    async def executescript(self, script: str) -> Cursor:
        return Cursor(self.raw.executescript(script))

    async def commit(self) -> None:
        self.raw.commit()

    async def rollback(self) -> None:
        self.raw.rollback()

    @property
    def in_transaction(self) -> bool:
        return self.raw.in_transaction

    def close(self) -> None:
        self.raw.close()


def open_writer_connection(path: Path) -> WriterConnection:
    """WAL, commits that leave the fsync to the caller (NORMAL: still atomic and safe from a process
    crash), no automatic checkpoint, and a lock taken by someone else reported at once."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=0)
    for pragma in ("busy_timeout = 0", "journal_mode = WAL", "synchronous = NORMAL", "wal_autocheckpoint = 0",
                   "foreign_keys = ON"):  # fmt: skip
        conn.execute(f"PRAGMA {pragma}")
    return WriterConnection(conn)
