"""A worker of a few lines for the service's tests: reads the executions stream through the
consumer group, claims with the execution's grant, answers with whatever `respond` returns."""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import cast

import msgspec
import redis.asyncio as redis
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from contract.executions import (
    EXECUTIONS_GROUP,
    FIELD_MESSAGE,
    ExecutionRequest,
    ExecutionResult,
    request_decoder,
)
from contract.groups import ensure_group

Respond = Callable[[ExecutionRequest], ExecutionResult]
Entry = tuple[bytes, dict[bytes, bytes]]


def grant_headers(request: ExecutionRequest) -> dict[str, str]:
    return {"Authorization": f"Bearer {request.grant}"}


class FakeWorker:
    def __init__(self, api: TestClient, client: redis.Redis, stream: str) -> None:
        self.api, self.redis, self.stream = api, client, stream
        self.seen: list[ExecutionRequest] = []

    async def ensure_group(self) -> None:
        await ensure_group(self.redis, self.stream, EXECUTIONS_GROUP)

    async def read(self, timeout_s: float) -> ExecutionRequest | None:
        await self.ensure_group()
        reply = await self.redis.xreadgroup(
            EXECUTIONS_GROUP, "fake", {self.stream: ">"}, count=1, block=int(timeout_s * 1000)
        )
        entries = cast(list[tuple[bytes, list[Entry]]], reply)
        if not entries:
            return None
        message_id, fields = entries[0][1][0]
        await self.redis.xack(self.stream, EXECUTIONS_GROUP, message_id)
        request = request_decoder.decode(fields[FIELD_MESSAGE])
        self.seen.append(request)
        return request

    async def next_request(self, timeout_s: float = 5.0) -> ExecutionRequest:
        request = await self.read(timeout_s)
        assert request is not None, "no execution request arrived on the stream"
        return request

    async def claim(self, request: ExecutionRequest, worker: str = "fake") -> ClientResponse:
        return await self.api.post(
            f"/api/engine/{request.project}/executions/{request.id}/claim",
            json={"worker": worker},
            headers=grant_headers(request),
        )

    async def report(self, request: ExecutionRequest, result: ExecutionResult) -> ClientResponse:
        return await self.api.post(
            f"/api/engine/{request.project}/executions/{request.id}/result",
            data=msgspec.json.encode(result),
            headers={**grant_headers(request), "Content-Type": "application/json"},
        )

    async def run_one(self, respond: Respond, request: ExecutionRequest | None = None) -> ExecutionRequest:
        request = request or await self.next_request()
        claimed = await self.claim(request)
        assert claimed.status == 200, await claimed.text()
        recorded = await self.report(request, respond(request))
        assert recorded.status == 200, await recorded.text()
        return request

    @contextlib.asynccontextmanager
    async def serving(self, respond: Respond) -> AsyncIterator[None]:
        """Answer every execution in the background while the block runs."""
        await self.ensure_group()
        stop = asyncio.Event()

        async def loop() -> None:
            while not stop.is_set():  # a short block, not a cancel: redis-py does not take a cancel mid-read well
                request = await self.read(0.05)
                if request is not None:
                    await self.run_one(respond, request)

        task = asyncio.create_task(loop())
        try:
            yield
        finally:
            stop.set()
            await task
