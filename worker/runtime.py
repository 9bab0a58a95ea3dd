"""The worker as an object with start/close (as arq's Worker): listener, snapshot cache, API client."""

import asyncio
import contextlib
import logging

import aiohttp

from contract.streams import Streams
from worker.context import ExecutionContext
from worker.engine_client import EngineClient
from worker.listener import ChangeListener, listener_client
from worker.settings import WorkerSettings
from worker.snapshots import SnapshotCache

log = logging.getLogger("worker")


class Worker:
    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self._session: aiohttp.ClientSession | None = None
        self._listen_client = listener_client(settings.redis_url, settings.listen_block_ms)
        self._tasks: list[asyncio.Task[None]] = []
        self.cache: SnapshotCache | None = None
        self.listener: ChangeListener | None = None

    async def start(self) -> None:
        settings = self.settings
        self._session = aiohttp.ClientSession()
        client = EngineClient(self._session, settings.api_url, settings.fetch_timeout_s)
        self.cache = SnapshotCache(
            client.fetch,
            max_projects=settings.snapshot_cache_projects,
            miss_refresh_interval_s=settings.miss_refresh_interval_s,
        )
        self.listener = ChangeListener(
            self._listen_client, Streams(settings.stream_prefix).events, self.cache, block_ms=settings.listen_block_ms
        )
        self._tasks.append(asyncio.create_task(self.listener.run(), name="change-listener"))

    async def wait_connected(self, timeout_s: float = 10.0) -> None:
        assert self.listener is not None
        await asyncio.wait_for(self.listener.connected.wait(), timeout_s)

    def execution(self, project: str, token: str) -> ExecutionContext:
        assert self.cache is not None, "start() the worker first"
        return ExecutionContext(self.cache, project, token, self.settings.execution_cache_ttl_s)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self._listen_client.aclose()
        if self._session is not None:
            await self._session.close()
