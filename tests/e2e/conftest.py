"""End-to-end fixtures: the service and the worker as real processes (`python -m service`,
`python -m worker`), on the shared Redis or on a private redis-server a test can stop and restart.

Each test gets its own stream prefix, database, ports and admin token; everything it started is
stopped when it ends.
"""

import json
import secrets as random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.fernet import Fernet

from tests.support.processes import Process, RedisServer, ServiceProcess, service_process, worker_process
from worker.runtime import Worker
from worker.settings import WorkerSettings


@dataclass
class E2EProject:
    id: str
    dashboard_token: str
    engine_token: str

    @property
    def dashboard(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.dashboard_token}"}

    @property
    def engine(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.engine_token}"}


@dataclass
class Stack:
    """A running service and worker process, and an HTTP session that records every response body."""

    service: ServiceProcess
    worker: Process
    redis_url: str
    prefix: str
    db_path: Path
    session: aiohttp.ClientSession
    responses: list[bytes] = field(default_factory=list)

    @property
    def events_stream(self) -> str:
        return f"{self.prefix}:events"

    async def call(self, method: str, path: str, *, headers: dict[str, str], **kwargs: Any) -> tuple[int, Any]:
        async with self.session.request(method, self.service.url + path, headers=headers, **kwargs) as response:
            body = await response.read()
        self.responses.append(body)
        if not body:
            return response.status, None
        try:
            return response.status, json.loads(body)
        except ValueError:
            return response.status, body.decode(errors="replace")

    async def create_project(self, name: str = "Shop") -> E2EProject:
        admin = {"Authorization": f"Bearer {self.service.admin_token}"}
        status, body = await self.call("POST", "/api/projects", json={"name": name}, headers=admin)
        assert status == 201, body
        return E2EProject(body["id"], body["dashboard_token"], body["engine_token"])

    async def put(self, project: E2EProject, name: str, value: str) -> dict[str, Any]:
        path = f"/api/projects/{project.id}/secrets/{name}"
        status, body = await self.call("PUT", path, json={"value": value}, headers=project.dashboard)
        assert status in (200, 201), (status, body)
        return dict(body)

    async def delete(self, project: E2EProject, name: str) -> None:
        status, body = await self.call(
            "DELETE", f"/api/projects/{project.id}/secrets/{name}", headers=project.dashboard
        )
        assert status == 204, (status, body)

    async def revision(self, project: E2EProject) -> int:
        status, body = await self.call("GET", f"/api/engine/{project.id}/secrets", headers=project.engine)
        assert status == 200, body
        return int(body["revision"])

    def in_process_worker(self, **overrides: Any) -> Worker:
        """A worker object in the test process, pointed at the service process, to drive resolution."""
        settings = WorkerSettings(
            redis_url=self.redis_url,
            api_url=self.service.url,
            stream_prefix=self.prefix,
            listen_block_ms=200,
            **overrides,
        )
        return Worker(settings)


StartStack = Callable[..., Awaitable[Stack]]


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def start_stack(tmp_path: Path, prefix: str) -> AsyncIterator[StartStack]:
    """Start the service and worker processes against `redis_url`; stopped when the test ends."""
    started: list[Stack] = []
    session = aiohttp.ClientSession()

    async def start(redis_url: str, **extra_env: str) -> Stack:
        folder = tmp_path / f"stack-{len(started)}"
        folder.mkdir()
        service = service_process(
            folder,
            redis_url=redis_url,
            prefix=prefix,
            master_key=Fernet.generate_key().decode(),
            admin_token="e2e-admin-" + random.token_hex(12),
            **extra_env,
        )
        service.process.start()
        worker = worker_process(folder, redis_url=redis_url, prefix=prefix, api_url=service.url)
        stack = Stack(service, worker, redis_url, prefix, folder / "backend-secrets.db", session)
        started.append(stack)
        await service.wait_healthy()
        worker.start()
        await worker.wait_for_log("following")
        return stack

    yield start
    for stack in started:
        stack.worker.stop()
        stack.service.process.stop()
    await session.close()
