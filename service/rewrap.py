"""Master key rotation: every project key re-wrapped under the first master key, a small batch at a time.

The steps (README, "Rotating the master key"):
1. put the new key first in BACKEND_SECRETS_MASTER_KEYS, keep the old one after it, restart the
   service (new project keys are now wrapped by the new key; old ones still unwrap);
2. `backend-secrets keys rewrap` with the same environment, while the API keeps serving;
3. when it reports every key under the first master key, remove the old key and restart.

Each batch is read, re-wrapped outside any transaction, then written in its own short
`BEGIN IMMEDIATE` transaction (WAL and the busy timeout let it interleave with the service's
writer). A key is written only if it is still the one that was read (compare-and-set), so a key the
API rotated meanwhile is not overwritten with a stale one: it is read again. Interrupted, it can
simply be run again: a key already in the current form (the first master key alone opens it, and
it has a shred key) is skipped, so nothing done is redone. Project keys stored before shred keys
existed get one on the way (service.keystore).

Only the wrapping changes, never a project key: no ciphertext, revision or event changes.
"""

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from service.keyring import KeyRing, KeyUnavailable

DEFAULT_BATCH: Final = 50
MAX_PASSES: Final = 5  # keys changed under us are read again, this many times at most


@dataclass(slots=True)
class Progress:
    total: int  # projects when the run started
    seen: int = 0
    rewrapped: int = 0
    already: int = 0  # already under the first master key: skipped
    failed: list[str] = field(default_factory=list)  # projects no configured master key unwraps
    vanished: int = 0  # deleted while the run went on

    @property
    def complete(self) -> bool:
        return not self.failed


def rewrap_all(
    db_path: Path,
    keyring: KeyRing,
    *,
    batch_size: int = DEFAULT_BATCH,
    busy_timeout_ms: int = 5_000,
    on_batch: Callable[[Progress], None] | None = None,
) -> Progress:
    conn = sqlite3.connect(db_path, timeout=busy_timeout_ms / 1000, isolation_level=None)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        progress = Progress(total=int(conn.execute("SELECT count(*) FROM projects").fetchone()[0]))
        after = ""
        while rows := _batch(conn, after, batch_size):
            _rewrap_batch(conn, keyring, rows, progress)
            after = rows[-1][0]
            if on_batch is not None:
                on_batch(progress)
        return progress
    finally:
        conn.close()


def _batch(conn: sqlite3.Connection, after: str, size: int) -> list[tuple[str, bytes]]:
    rows = conn.execute("SELECT id, wrapped_key FROM projects WHERE id > ? ORDER BY id LIMIT ?", (after, size))
    return [(str(project), bytes(wrapped)) for project, wrapped in rows]


def _rewrap_batch(conn: sqlite3.Connection, keyring: KeyRing, rows: list[tuple[str, bytes]], p: Progress) -> None:
    pending = rows
    for _ in range(MAX_PASSES):
        writes: list[tuple[bytes, str, bytes]] = []
        for project, wrapped in pending:
            if keyring.is_current(wrapped):
                p.already += 1
                continue
            try:
                writes.append((keyring.rewrap(wrapped), project, wrapped))
            except KeyUnavailable:
                p.failed.append(project)
        missed = _write(conn, writes)
        p.rewrapped += len(writes) - len(missed)
        if not missed:
            break
        pending = _reread(conn, missed)  # changed by the API meanwhile (rotated or deleted): look again
        p.vanished += len(missed) - len(pending)
    p.seen += len(rows)


def _write(conn: sqlite3.Connection, writes: list[tuple[bytes, str, bytes]]) -> list[str]:
    """Compare-and-set each key in one transaction; returns the projects whose key had changed."""
    if not writes:
        return []
    missed = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        for new, project, old in writes:
            cursor = conn.execute(
                "UPDATE projects SET wrapped_key = ? WHERE id = ? AND wrapped_key = ?", (new, project, old)
            )
            if cursor.rowcount == 0:
                missed.append(project)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return missed


def _reread(conn: sqlite3.Connection, projects: list[str]) -> list[tuple[str, bytes]]:
    marks = ",".join("?" * len(projects))
    rows = conn.execute(f"SELECT id, wrapped_key FROM projects WHERE id IN ({marks}) ORDER BY id", projects)
    return [(str(project), bytes(wrapped)) for project, wrapped in rows]


def remaining(db_path: Path, keyring: KeyRing) -> list[str]:
    """Projects whose key is not yet in the current form (empty: the other master keys may go)."""
    conn = sqlite3.connect(db_path)
    try:
        rows = conn.execute("SELECT id, wrapped_key FROM projects ORDER BY id").fetchall()
    finally:
        conn.close()
    return [str(project) for project, wrapped in rows if not keyring.is_current(bytes(wrapped))]
