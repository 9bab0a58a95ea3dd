"""The worker as an object with start/close (as arq's Worker): the change listener, the snapshot
cache, and the consumer that runs executions."""

import asyncio
import logging
import os
import secrets as random
import socket

import aiohttp
import msgspec

from contract.executions import ExecutionRequest, ExecutionResult
from contract.streams import Streams
from contract.tasks import cancel_and_wait
from contract.workflows import Workflow
from worker.consumer import ExecutionConsumer, failure
from worker.context import ExecutionContext
from worker.engine_client import EngineClient, ExecutionApi
from worker.errors import EngineError
from worker.executor import Execution
from worker.listener import ChangeListener, DeltaReader, delta_client, listener_client
from worker.metrics import WorkerMetrics
from worker.settings import WorkerSettings
from worker.snapshots import SnapshotCache

log = logging.getLogger("worker")


def worker_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{random.token_hex(3)}"


class Worker:
    def __init__(self, settings: WorkerSettings, *, run_executions: bool = True) -> None:
        self.settings = settings
        self.name = worker_name()
        self._run_executions = run_executions
        self._session: aiohttp.ClientSession | None = None
        self._listen_client = listener_client(settings.redis_url, settings.listen_block_ms)
        self._delta_client = delta_client(settings.redis_url)  # engine deltas, beside the blocked XREAD
        self._queue_client = listener_client(settings.redis_url, settings.listen_block_ms)
        self._tasks: list[asyncio.Task[None]] = []
        self.cache: SnapshotCache | None = None
        self.listener: ChangeListener | None = None
        self.consumer: ExecutionConsumer | None = None
        self.metrics = WorkerMetrics(self)

    async def start(self) -> None:
        settings, streams = self.settings, Streams(self.settings.stream_prefix)
        self._session = aiohttp.ClientSession()
        client = EngineClient(self._session, settings.api_url, settings.fetch_timeout_s)
        self.cache = SnapshotCache(
            client.fetch,
            max_projects=settings.snapshot_cache_projects,
            miss_refresh_interval_s=settings.miss_refresh_interval_s,
        )
        self.listener = ChangeListener(
            self._listen_client,
            streams.events,
            self.cache,
            block_ms=settings.listen_block_ms,
            deltas=DeltaReader(self._delta_client, streams),
        )
        self.listener.observe_lag = self.metrics.propagation_lag.observe
        self._tasks.append(asyncio.create_task(self.listener.run(), name="change-listener"))
        if self._run_executions:
            await self._start_consumer(streams.executions)

    async def _start_consumer(self, stream: str) -> None:
        assert self._session is not None
        api = ExecutionApi(self._session, self.settings.api_url, self.settings.fetch_timeout_s)
        self.consumer = ExecutionConsumer(
            self._queue_client,
            stream,
            Streams(self.settings.stream_prefix).results,
            self.name,
            api,
            self.metrics.timed(self.run_execution),
            concurrency=self.settings.concurrency,
            reclaim_after_ms=self.settings.reclaim_after_ms,
        )
        self._tasks.append(asyncio.create_task(self.consumer.run(), name="execution-consumer"))

    async def wait_connected(self, timeout_s: float = 10.0) -> None:
        assert self.listener is not None
        await asyncio.wait_for(self.listener.connected.wait(), timeout_s)

    def execution(self, project: str, token: str) -> ExecutionContext:
        assert self.cache is not None, "start() the worker first"
        return ExecutionContext(self.cache, project, token, self.settings.execution_cache_ttl_s)

    async def run_execution(self, request: ExecutionRequest, attempt: int) -> ExecutionResult:
        try:
            workflow = msgspec.convert(request.definition, Workflow)
        except msgspec.ValidationError as exc:
            return failure("invalid_workflow", f"the saved workflow cannot be run: {exc}")
        assert self.cache is not None
        self.cache.invalidate(request.project, request.revision)  # drops the snapshot only if older
        ctx = self.execution(request.project, request.grant)
        assert self._session is not None
        try:
            return await Execution(ctx, workflow, request.input, self._session).run()
        except EngineError as exc:
            return failure(exc.code, exc.message)
        finally:
            ctx.secrets.close()

    async def close(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()
        for task in self._tasks:
            await cancel_and_wait(task)
        self._tasks.clear()
        await self._listen_client.aclose()
        await self._delta_client.aclose()
        await self._queue_client.aclose()
        if self._session is not None:
            await self._session.close()
