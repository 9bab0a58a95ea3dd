"""Versioned schema migrations, applied in order at start-up inside one transaction each."""

import aiosqlite

MIGRATIONS: tuple[str, ...] = (
    # 1: projects, tokens, secrets and the transactional outbox.
    """
    CREATE TABLE projects (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL,
        created_at  TEXT NOT NULL,
        wrapped_key BLOB NOT NULL,
        revision    INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE tokens (
        hash       BLOB PRIMARY KEY,
        token_id   TEXT NOT NULL,
        project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        scope      TEXT NOT NULL CHECK (scope IN ('dashboard', 'engine')),
        created_at TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX tokens_by_project ON tokens(project_id);
    CREATE TABLE secrets (
        project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        name       TEXT NOT NULL,
        version    INTEGER NOT NULL,
        ciphertext BLOB NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (project_id, name)
    ) WITHOUT ROWID;
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE outbox (
        seq     INTEGER PRIMARY KEY AUTOINCREMENT,
        payload BLOB NOT NULL
    );
    """,
)


async def current_version(conn: aiosqlite.Connection) -> int:
    async with conn.execute("PRAGMA user_version") as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def migrate(conn: aiosqlite.Connection) -> int:
    """Bring the schema up to date; returns the version reached."""
    version = await current_version(conn)
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        await conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in filter(str.strip, script.split(";")):
                await conn.execute(statement)
            await conn.execute(f"PRAGMA user_version = {number}")
            await conn.commit()
        except BaseException:
            await conn.rollback()
            raise
    return len(MIGRATIONS)
