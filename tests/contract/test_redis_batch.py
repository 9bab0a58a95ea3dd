"""CommandBatcher on the real Redis: callers of one loop turn share a batch, and its outcome."""

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
import redis.asyncio as redis
from redis.exceptions import ResponseError

from contract import redis_clients
from contract.redis_batch import Command, CommandBatcher

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
async def batch_client(redis_url: str) -> AsyncIterator[redis.Redis]:
    """The batcher's own client, as the service and worker give it one."""
    client = redis_clients.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def batches(batch_client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """One entry per batch put on the wire: each takes a connection from the client's pool."""
    started: list[bool] = []
    pool = batch_client.connection_pool
    real = pool.get_connection

    async def counting(*args: Any, **kwargs: Any) -> Any:
        started.append(True)
        return await real(*args, **kwargs)

    monkeypatch.setattr(pool, "get_connection", counting)
    return started


def push(key: str, value: str) -> Command:
    return ("RPUSH", key, value)


def block_for(key: str, seconds: float) -> Command:
    """Holds the batch on the wire (BLPOP on an empty list) for `seconds`."""
    return ("BLPOP", key, seconds)


async def listed(client: redis.Redis, key: str) -> list[bytes]:
    return cast(list[bytes], await client.lrange(key, 0, -1))


@pytest.mark.parametrize("transaction", [False, True])
async def test_callers_of_one_loop_turn_share_one_batch(
    redis_client: redis.Redis, batch_client: redis.Redis, prefix: str, batches: list[bool], transaction: bool
) -> None:
    batcher = CommandBatcher(batch_client, transaction=transaction, timeout_s=2.0)
    key = f"{prefix}:shared"
    await asyncio.gather(*(batcher.run(push(key, str(n))) for n in range(10)))
    assert len(batches) == 1
    assert await listed(redis_client, key) == [str(n).encode() for n in range(10)]


async def test_after_a_batch_new_callers_start_a_new_batch(
    redis_client: redis.Redis, batch_client: redis.Redis, prefix: str, batches: list[bool]
) -> None:
    batcher = CommandBatcher(batch_client, transaction=False, timeout_s=2.0)
    key = f"{prefix}:rounds"
    await asyncio.gather(*(batcher.run(push(key, "a")) for _ in range(3)))
    await batcher.run(push(key, "b"))
    await asyncio.gather(*(batcher.run(push(key, "c")) for _ in range(2)))
    assert len(batches) == 3
    assert await listed(redis_client, key) == [b"a"] * 3 + [b"b"] + [b"c"] * 2


async def test_callers_arriving_while_a_batch_is_on_the_wire_share_the_next(
    redis_client: redis.Redis, batch_client: redis.Redis, prefix: str, batches: list[bool]
) -> None:
    batcher = CommandBatcher(batch_client, transaction=False, timeout_s=2.0)
    key = f"{prefix}:late"
    first = asyncio.create_task(batcher.run(block_for(f"{prefix}:empty", 0.2)))
    await asyncio.sleep(0.05)  # the first batch is waiting on BLPOP
    assert len(batches) == 1 and not first.done()
    await asyncio.gather(*(batcher.run(push(key, str(n))) for n in range(5)))
    assert first.done() and len(batches) == 2
    assert await listed(redis_client, key) == [str(n).encode() for n in range(5)]


@pytest.mark.parametrize("transaction", [False, True])
async def test_a_failing_batch_fails_every_caller_with_the_same_error(
    redis_client: redis.Redis, batch_client: redis.Redis, prefix: str, batches: list[bool], transaction: bool
) -> None:
    batcher = CommandBatcher(batch_client, transaction=transaction, timeout_s=2.0)
    await redis_client.set(f"{prefix}:string", "x")
    callers = [push(f"{prefix}:a", "1"), push(f"{prefix}:string", "wrong type"), push(f"{prefix}:b", "2")]
    outcomes = await asyncio.gather(*(batcher.run(command) for command in callers), return_exceptions=True)
    assert len(batches) == 1
    assert all(isinstance(outcome, ResponseError) for outcome in outcomes), outcomes
    assert outcomes[0] is outcomes[1] is outcomes[2]
    await batcher.run(push(f"{prefix}:after", "ok"))  # the batcher goes on with a new batch
    assert await listed(redis_client, f"{prefix}:after") == [b"ok"]


async def test_a_batch_past_its_timeout_fails_every_caller_and_the_next_one_runs(
    redis_client: redis.Redis, batch_client: redis.Redis, prefix: str
) -> None:
    batcher = CommandBatcher(batch_client, transaction=False, timeout_s=0.1)
    callers = [block_for(f"{prefix}:empty", 1.0), push(f"{prefix}:a", "1")]
    outcomes = await asyncio.gather(*(batcher.run(command) for command in callers), return_exceptions=True)
    assert all(isinstance(outcome, TimeoutError) for outcome in outcomes), outcomes
    assert outcomes[0] is outcomes[1]
    await batcher.run(push(f"{prefix}:after", "ok"))
    assert await listed(redis_client, f"{prefix}:after") == [b"ok"]


async def test_a_caller_cancelled_before_the_send_does_not_stop_the_others(
    redis_client: redis.Redis, batch_client: redis.Redis, prefix: str, batches: list[bool]
) -> None:
    batcher = CommandBatcher(batch_client, transaction=True, timeout_s=2.0)
    key = f"{prefix}:kept"
    tasks = [asyncio.create_task(batcher.run(push(key, str(n)))) for n in range(3)]
    await asyncio.sleep(0)  # every caller joined; the batch starts on the next turn
    tasks[1].cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    assert done[0] is None and done[2] is None and isinstance(done[1], asyncio.CancelledError)
    assert len(batches) == 1
    assert {b"0", b"2"} <= set(await listed(redis_client, key))


async def test_a_caller_cancelled_while_its_batch_is_on_the_wire_does_not_stop_the_others(
    redis_client: redis.Redis, batch_client: redis.Redis, prefix: str, batches: list[bool]
) -> None:
    batcher = CommandBatcher(batch_client, transaction=False, timeout_s=2.0)
    key = f"{prefix}:kept"
    slow = asyncio.create_task(batcher.run(block_for(f"{prefix}:empty", 0.2)))
    others = [asyncio.create_task(batcher.run(push(key, str(n)))) for n in range(2)]
    await asyncio.sleep(0.05)  # the shared batch is waiting on BLPOP
    slow.cancel()
    assert await asyncio.gather(*others) == [None, None]
    assert slow.cancelled() and len(batches) == 1
    assert await listed(redis_client, key) == [b"0", b"1"]


async def test_callers_queued_behind_a_batch_that_times_out_fail_with_it(
    batch_client: redis.Redis, prefix: str
) -> None:
    """Redis hangs: nobody waits longer than one timeout, however many batches were queued."""
    batcher = CommandBatcher(batch_client, transaction=False, timeout_s=0.3)
    stuck = asyncio.create_task(batcher.run(block_for(f"{prefix}:empty", 2.0)))
    await asyncio.sleep(0.05)  # the first batch is on the wire
    started = time.monotonic()
    behind = [asyncio.create_task(batcher.run(push(f"{prefix}:behind", str(n)))) for n in range(3)]
    outcomes = await asyncio.gather(stuck, *behind, return_exceptions=True)
    assert all(isinstance(outcome, TimeoutError) for outcome in outcomes), outcomes
    assert time.monotonic() - started < 0.3 + 0.2  # not a second timeout for the batch behind


async def test_a_batch_after_an_error_reply_goes_on_a_fresh_connection(
    batch_client: redis.Redis, redis_client: redis.Redis, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replies may be left unread after an error: that connection is closed, never reused as is."""
    taken: list[Any] = []
    pool = batch_client.connection_pool
    real = pool.get_connection

    async def recording(*args: Any, **kwargs: Any) -> Any:
        taken.append(await real(*args, **kwargs))
        return taken[-1]

    monkeypatch.setattr(pool, "get_connection", recording)
    await redis_client.set(f"{prefix}:string", "x")
    batcher = CommandBatcher(batch_client, transaction=False, timeout_s=2.0)
    with pytest.raises(ResponseError):
        await batcher.run(push(f"{prefix}:string", "wrong type"), push(f"{prefix}:a", "1"))
    assert not taken[0].is_connected
    await batcher.run(push(f"{prefix}:after", "ok"))
    assert await listed(redis_client, f"{prefix}:after") == [b"ok"]
