"""Opening SQLite connections with the durability the service promises.

WAL with synchronous=FULL: an acknowledged write has been fsynced to the WAL before the
response is sent, so it survives a crash and a power cut (NORMAL would survive a crash but
could lose the last commits on a power cut).
"""

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import aiosqlite


async def connect(path: Path, *, busy_timeout_ms: int, readonly: bool = False) -> aiosqlite.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = await aiosqlite.connect(path, isolation_level=None)
    try:
        await conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        if not readonly:
            await conn.execute("PRAGMA journal_mode = WAL")
        await conn.execute("PRAGMA synchronous = FULL")
        await conn.execute("PRAGMA foreign_keys = ON")
    except BaseException:
        await conn.close()
        raise
    return conn


# Each aiosqlite call is a round trip to the connection's thread (~0.1 ms of wake-ups on a small
# VM); `async with conn.execute(...) as cursor: await cursor.fetchone()` costs three of them,
# these one. The writer runs a batch's statements one after another, so this is its throughput.
async def fetch_all(conn: aiosqlite.Connection, sql: str, params: Iterable[Any] = ()) -> list[Any]:
    """Every row of one statement, in one round trip to the connection's thread."""
    return list(await conn.execute_fetchall(sql, params))


async def fetch_one(conn: aiosqlite.Connection, sql: str, params: Iterable[Any] = ()) -> Any | None:
    """The first row of one statement (or None), in one round trip; the statement runs to completion."""
    rows = await fetch_all(conn, sql, params)
    return rows[0] if rows else None
