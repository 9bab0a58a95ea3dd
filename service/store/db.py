"""Opening SQLite connections with the durability the service promises.

WAL with synchronous=FULL: an acknowledged write has been fsynced to the WAL before the
response is sent, so it survives a crash and a power cut (NORMAL would survive a crash but
could lose the last commits on a power cut).
"""

from pathlib import Path

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
