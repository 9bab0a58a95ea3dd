"""Fault-suite fixtures. Each test gets its own redis-server (on a free loopback port), database,
stream prefix and ports; everything a test started is stopped by pid when it ends."""

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.faults.helpers import FaultStack
from tests.support.processes import RedisServer


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[FaultStack]:
    """A private, non-persistent redis-server (restarting it empties it) and nothing else started yet."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    async with aiohttp.ClientSession() as session:
        fault_stack = FaultStack(folder=tmp_path, redis=server, session=session)
        try:
            yield fault_stack
        finally:
            fault_stack.stop_all()
            server.stop()


@pytest.fixture
async def durable_stack(tmp_path: Path) -> AsyncIterator[FaultStack]:
    """As `stack`, with a redis-server that writes an append-only file: a restart keeps its streams,
    as a production Redis does."""
    server = RedisServer(tmp_path / "redis")
    server.process.args += ["--appendonly", "yes", "--appendfsync", "always"]  # later options win
    server.start()
    async with aiohttp.ClientSession() as session:
        fault_stack = FaultStack(folder=tmp_path, redis=server, session=session)
        try:
            yield fault_stack
        finally:
            fault_stack.stop_all()
            server.stop()


@dataclass
class Target:
    """A local HTTP server that workflows call: it records every request, and `/slow` holds the
    first `hold` requests until `release` is set (or the test ends)."""

    server: TestServer
    requests: list[dict[str, Any]] = field(default_factory=list)
    hold: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    async def wait_for_requests(self, count: int, timeout_s: float = 15.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while len(self.requests) < count:
            assert asyncio.get_running_loop().time() < deadline, f"{len(self.requests)} of {count} requests came"
            await asyncio.sleep(0.02)


@pytest.fixture
async def target() -> AsyncIterator[Target]:
    app = web.Application()
    server = TestServer(app, host="127.0.0.1")
    state = Target(server)

    async def record(request: web.Request) -> web.Response:
        raw = await request.read()
        state.requests.append({"path": request.path, "json": json.loads(raw) if raw else None})
        n = len(state.requests)
        if request.path == "/slow" and n <= state.hold:
            await asyncio.wait_for(state.release.wait(), timeout=60)
        return web.json_response({"n": n})

    app.router.add_post("/echo", record)
    app.router.add_post("/slow", record)
    await server.start_server()
    try:
        yield state
    finally:
        state.release.set()
        await server.close()
