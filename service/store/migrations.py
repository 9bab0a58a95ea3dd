"""Versioned schema migrations, applied in order at start-up inside one transaction each."""

import sqlite3

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
    # 2: workflows, and executions with their grants (only the SHA-256 of a grant is kept).
    # Execution ids start with their creation time in hex, so ordering by id is ordering by age.
    """
    CREATE TABLE workflows (
        project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        name       TEXT NOT NULL,
        version    INTEGER NOT NULL,
        definition TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (project_id, name)
    );
    CREATE TABLE executions (
        id                TEXT PRIMARY KEY,
        project_id        TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        workflow          TEXT NOT NULL,
        workflow_version  INTEGER NOT NULL,
        status            TEXT NOT NULL
                          CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'timed_out')),
        attempt           INTEGER NOT NULL DEFAULT 0,
        worker            TEXT,
        created_at        TEXT NOT NULL,
        started_at        TEXT,
        finished_at       TEXT,
        nodes             TEXT,
        output            TEXT,
        response          TEXT,
        error_code        TEXT,
        error_message     TEXT,
        error_node        TEXT,
        error_http_status INTEGER,
        grant_hash        BLOB NOT NULL,
        grant_expires     REAL NOT NULL
    );
    CREATE INDEX executions_by_project ON executions(project_id, id);
    CREATE UNIQUE INDEX executions_by_grant ON executions(grant_hash);
    CREATE INDEX executions_open ON executions(grant_expires) WHERE status IN ('queued', 'running');
    """,
    # 3: Frontend (Build) vars (public, stored in clear), keyed fingerprints of secret values for the
    # frontend guardrail (NULL for a secret written before this migration), and dashboard sessions
    # (only the SHA-256 of a session id is kept).
    """
    CREATE TABLE frontend_vars (
        project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        name       TEXT NOT NULL,
        value      TEXT NOT NULL,
        version    INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (project_id, name)
    ) WITHOUT ROWID;
    ALTER TABLE secrets ADD COLUMN fingerprint BLOB;
    CREATE INDEX secrets_by_fingerprint ON secrets(project_id, fingerprint) WHERE fingerprint IS NOT NULL;
    CREATE TABLE sessions (
        id_hash    BLOB PRIMARY KEY,
        project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        token_id   TEXT NOT NULL,
        csrf_token TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX sessions_by_expiry ON sessions(expires_at);
    """,
    # 4: typed Credentials (ciphertext: the JSON of their fields, store "credential"), and keyed
    # fingerprints of their secret fields for the frontend guardrail, deleted with their credential.
    """
    CREATE TABLE credentials (
        project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        name       TEXT NOT NULL,
        type       TEXT NOT NULL,
        version    INTEGER NOT NULL,
        ciphertext BLOB NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (project_id, name)
    ) WITHOUT ROWID;
    CREATE TABLE credential_fingerprints (
        project_id  TEXT NOT NULL,
        name        TEXT NOT NULL,
        field       TEXT NOT NULL,
        fingerprint BLOB NOT NULL,
        PRIMARY KEY (project_id, name, field),
        FOREIGN KEY (project_id, name) REFERENCES credentials(project_id, name) ON DELETE CASCADE
    ) WITHOUT ROWID;
    CREATE INDEX credential_fingerprints_by_value ON credential_fingerprints(project_id, fingerprint);
    """,
    # 5: a secret's previous value during a signing-key overlap window (sealed like the value, dropped
    # once `previous_valid_until` (Unix time) passes) and when the engine last read it; which saved
    # workflows reference which secret or credential (kept with each workflow save); and the audit log:
    # append-only (UPDATE refused; DELETE refused while the project exists, so only deleting the
    # project removes its log). `seq` is the paging cursor; AUTOINCREMENT never reuses one.
    """
    ALTER TABLE secrets ADD COLUMN previous_ciphertext BLOB;
    ALTER TABLE secrets ADD COLUMN previous_valid_until REAL;
    ALTER TABLE secrets ADD COLUMN last_used_at TEXT;
    CREATE INDEX secrets_by_previous_expiry ON secrets(previous_valid_until) WHERE previous_valid_until IS NOT NULL;
    CREATE TABLE workflow_refs (
        project_id TEXT NOT NULL,
        workflow   TEXT NOT NULL,
        kind       TEXT NOT NULL CHECK (kind IN ('secret', 'credential')),
        name       TEXT NOT NULL,
        PRIMARY KEY (project_id, kind, name, workflow),
        FOREIGN KEY (project_id, workflow) REFERENCES workflows(project_id, name) ON DELETE CASCADE
    ) WITHOUT ROWID;
    CREATE INDEX workflow_refs_by_workflow ON workflow_refs(project_id, workflow);
    CREATE TABLE audit_log (
        seq          INTEGER PRIMARY KEY AUTOINCREMENT,
        project_id   TEXT NOT NULL,
        at           TEXT NOT NULL,
        action       TEXT NOT NULL CHECK (action IN ('change', 'read', 'refused')),
        actor_kind   TEXT NOT NULL,
        actor_id     TEXT,
        store        TEXT,
        op           TEXT,
        name         TEXT,
        version      INTEGER,
        execution_id TEXT,
        node_id      TEXT,
        status       INTEGER,
        code         TEXT,
        suppressed   INTEGER
    );
    CREATE INDEX audit_log_by_project ON audit_log(project_id, seq);
    CREATE INDEX audit_log_by_name ON audit_log(project_id, name, seq);
    CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
    BEGIN
        SELECT RAISE(ABORT, 'the audit log is append-only');
    END;
    CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
    WHEN EXISTS (SELECT 1 FROM projects WHERE id = OLD.project_id)
    BEGIN
        SELECT RAISE(ABORT, 'the audit log is append-only while its project exists');
    END;
    """,
)


def statements(script: str) -> list[str]:
    """The script's statements; a `;` inside a trigger's BEGIN ... END does not end its CREATE TRIGGER."""
    found: list[str] = []
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                found.append(pending)
            pending = ""
    return found


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
            for statement in statements(script):
                await conn.execute(statement)
            await conn.execute(f"PRAGMA user_version = {number}")
            await conn.commit()
        except BaseException:
            await conn.rollback()
            raise
    return len(MIGRATIONS)
