"""The writer's syncer: checkpoints run on its own thread, and the writer's connection never runs one."""

import asyncio
from pathlib import Path

from service.store.inline_conn import open_writer_connection
from service.store.syncer import Syncer

PAGE = 4096


def test_the_writers_connection_leaves_checkpoints_to_the_syncer(tmp_path: Path) -> None:
    db_path = tmp_path / "wal.db"
    conn = open_writer_connection(db_path)
    try:
        conn.raw.execute("CREATE TABLE blobs (data BLOB)")
        for _ in range(1500):  # past SQLite's automatic checkpoint (1,000 pages)
            conn.raw.execute("INSERT INTO blobs VALUES (zeroblob(?))", (PAGE,))
        assert Path(f"{db_path}-wal").stat().st_size > 1500 * PAGE  # it only grew: no checkpoint reset it
    finally:
        conn.close()


async def test_a_checkpoint_copies_the_wal_into_the_database_file_at_most_once_per_period(tmp_path: Path) -> None:
    db_path = tmp_path / "wal.db"
    conn = open_writer_connection(db_path)
    syncer = Syncer(db_path, checkpoint_every_s=60)
    try:
        conn.raw.execute("CREATE TABLE blobs (data BLOB)")
        conn.raw.execute("INSERT INTO blobs VALUES (zeroblob(?))", (10 * PAGE,))
        started = syncer.wrote()
        assert started is not None
        done = await asyncio.wrap_future(started)
        assert not done.busy and done.wal_frames > 10 and done.copied == done.wal_frames
        assert db_path.stat().st_size > 10 * PAGE  # the rows are in the database file now
        assert syncer.wrote() is None  # not due again for a minute
    finally:
        await asyncio.to_thread(syncer.close)
        conn.close()
