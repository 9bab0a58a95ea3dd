"""The writer: operations submitted together run in the order they were submitted, in few hand-overs
to its thread, and a write submitted after the writer stopped fails at once with a clear error."""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from service.errors import InternalError
from service.store.db import connect
from service.store.migrations import migrate
from service.store.writer import Transaction, Writer

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
async def writer(tmp_path: Path) -> AsyncIterator[Writer]:
    db_path = tmp_path / "writer.db"
    setup = await connect(db_path, busy_timeout_ms=1000)
    await migrate(setup)
    await setup.close()
    writer = Writer(db_path, on_commit=lambda entries: None, busy_timeout_ms=1000)
    await writer.start()
    yield writer
    await writer.stop()


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
    submitted = writer.submit_nowait(appending([], 1))  # handed over at the end of this turn
    await writer.stop()
    with pytest.raises(InternalError, match="writer has stopped"):
        await asyncio.wait_for(submitted, 5)
