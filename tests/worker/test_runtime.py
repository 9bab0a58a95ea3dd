"""The worker object: it starts, follows the stream, and always shuts down promptly."""

import asyncio
import random
import time

import pytest
import redis.asyncio as redis

from contract.tasks import cancel_and_wait
from worker.runtime import Worker
from worker.settings import WorkerSettings

pytestmark = pytest.mark.timeout(20)


async def test_cancel_and_wait_ends_a_task_that_swallows_a_cancel() -> None:
    """What `asyncio.wait_for` inside redis-py does on Python 3.11 when a cancel lands as a send ends."""
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed += 1

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait(task), 2)
    assert task.cancelled() and swallowed == 1


async def test_close_always_returns_promptly(redis_url: str, prefix: str, redis_client: redis.Redis) -> None:
    settings = WorkerSettings(
        redis_url=redis_url, api_url="http://127.0.0.1:9", stream_prefix=prefix, listen_block_ms=10
    )
    rng = random.Random(7)
    for _ in range(40):
        worker = Worker(settings)
        await worker.start()
        await worker.wait_connected()
        await asyncio.sleep(rng.random() * 0.05)
        started = time.monotonic()
        await asyncio.wait_for(worker.close(), 3)
        assert time.monotonic() - started < 1.0


async def test_a_started_worker_follows_the_events_stream(
    redis_url: str, prefix: str, redis_client: redis.Redis
) -> None:
    worker = Worker(WorkerSettings(redis_url=redis_url, api_url="http://127.0.0.1:9", stream_prefix=prefix))
    await worker.start()
    try:
        await worker.wait_connected()
        assert worker.cache is not None and worker.cache.trusted
    finally:
        await worker.close()
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "change-listener"]
