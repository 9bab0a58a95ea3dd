"""Redis commands of many callers, sent together: what arrives while one pipeline is on the wire
goes out in the next, one write and one read for all of it (the writer's group commit, for Redis).

Each caller adds its commands to the shared pipeline and waits for that pipeline only. With
`transaction=True` a batch is one MULTI/EXEC, so each caller's commands still go in all or none.
When a pipeline fails, every caller in it gets the same error and decides what to do.
"""

import asyncio
from collections.abc import Callable
from typing import Any, Final

import redis.asyncio as redis
from redis.asyncio.client import Pipeline

MAX_BATCH: Final = 256

AddCommands = Callable[[Pipeline], Any]


class PipelineBatcher:
    def __init__(self, client: redis.Redis, *, transaction: bool, timeout_s: float) -> None:
        self._redis, self._transaction, self._timeout_s = client, transaction, timeout_s
        self._pending: list[tuple[AddCommands, asyncio.Future[None]]] = []
        self._sender: asyncio.Task[None] | None = None

    async def run(self, add: AddCommands) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((add, future))
        if self._sender is None:  # it starts on the next turn of the loop: callers of this one join
            self._sender = asyncio.create_task(self._send_all(), name="redis-batcher")
        await future

    async def _send_all(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                await self._send(batch)
        finally:
            self._sender = None

    async def _send(self, batch: list[tuple[AddCommands, "asyncio.Future[None]"]]) -> None:
        try:
            async with asyncio.timeout(self._timeout_s), self._redis.pipeline(transaction=self._transaction) as pipe:
                for add, _ in batch:
                    add(pipe)
                await pipe.execute()
        except Exception as exc:  # handed to every caller of the batch
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for _, future in batch:
            if not future.done():  # a caller that gave up (cancelled) is not answered
                future.set_result(None)
