"""Redis commands of many callers, sent together: what arrives while one batch is on the wire goes
out in the next, one write and one read for all of it (the writer's group commit, for Redis).

Each caller hands over its commands and waits for that batch only. With `transaction=True` a
batch is one MULTI/EXEC, so each caller's commands still go in all or none. When a batch fails,
every caller in it gets the same error and decides what to do; when it times out (Redis hangs),
so does every caller queued behind it, so nobody waits longer than one timeout.

Batches go straight on a connection of the client's pool, packed once: a redis-py pipeline
object costs ~50 µs more per batch (measured), and each execution goes through two batches.
"""

import asyncio
from typing import Any, Final, cast

import redis.asyncio as redis
from redis.asyncio.connection import Connection
from redis.typing import EncodableT

MAX_BATCH: Final = 256

Command = tuple[EncodableT, ...]


class CommandBatcher:
    def __init__(self, client: redis.Redis, *, transaction: bool, timeout_s: float) -> None:
        self._pool, self._transaction, self._timeout_s = client.connection_pool, transaction, timeout_s
        self._pending: list[tuple[tuple[Command, ...], asyncio.Future[None]]] = []
        self._sender: asyncio.Task[None] | None = None

    async def run(self, *commands: Command) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((commands, future))
        if self._sender is None:  # it starts on the next turn of the loop: callers of this one join
            self._sender = asyncio.create_task(self._send_all(), name="redis-batcher")
        await future

    async def _send_all(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                batch = [entry for entry in batch if not entry[1].done()]  # a caller that gave up is not sent
                if batch:
                    await self._send(batch)
        finally:
            self._sender = None

    async def _send(self, batch: list[tuple[tuple[Command, ...], "asyncio.Future[None]"]]) -> None:
        commands = [command for commands, _ in batch for command in commands]
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._exchange([("MULTI",), *commands, ("EXEC",)] if self._transaction else commands)
        except Exception as exc:  # handed to every caller of the batch
            if isinstance(exc, TimeoutError):  # Redis hangs: each batch queued behind would wait it out too
                batch, self._pending = batch + self._pending, []
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for _, future in batch:
            if not future.done():  # a caller that gave up (cancelled) is not answered
                future.set_result(None)

    async def _exchange(self, commands: list[Command]) -> None:
        """Send `commands` and read every reply; the first error reply is raised."""
        connection = cast(Connection, await self._pool.get_connection())  # type: ignore[no-untyped-call]
        try:
            await connection.send_packed_command(connection.pack_commands(commands), check_health=False)
            replies = [await connection.read_response() for _ in commands]  # raises at an error reply
        except BaseException:
            await connection.disconnect()  # replies may be left unread: the connection is not reused
            raise
        finally:
            await self._pool.release(connection)
        _raise_first_error(replies[-1] if self._transaction else replies)


def _raise_first_error(replies: Any) -> None:
    """A command that failed inside EXEC comes back as an error object among the results."""
    for reply in replies or ():
        if isinstance(reply, Exception):
            raise reply
