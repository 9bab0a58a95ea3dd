"""The worker's consumer on the real Redis and the real service: what it runs, claims, reports and acks.

Executions are queued by the service (a dashboard run with wait=false); the consumer runs them
with a fake `run` and hands each result over on the results stream, where the service reads it.
"""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

import aiohttp
import pytest
import redis.asyncio as redis
from aiohttp.test_utils import TestClient

from contract.executions import (
    EXECUTIONS_GROUP,
    FIELD_MESSAGE,
    STARTED_NOTICE_S,
    ClaimReply,
    ExecutionRequest,
    ExecutionResult,
    ResultReport,
    StartedReport,
    report_decoder,
    request_decoder,
)
from contract.groups import ensure_group
from contract.streams import Streams
from contract.tasks import cancel_and_wait
from service.clock import rfc3339
from tests.conftest import Project
from tests.service.test_hooks_api import WORKFLOW
from tests.support.executions import eventually, record, until_status
from tests.worker.conftest import api_url
from worker.consumer import ExecutionConsumer
from worker.engine_client import ExecutionApi

pytestmark = pytest.mark.timeout(20)

Run = Callable[[ExecutionRequest, int], Awaitable[ExecutionResult]]


class CountingApi(ExecutionApi):
    """The worker's real claim, counted."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.claims: list[str] = []

    async def claim(self, request: ExecutionRequest, worker: str) -> ClaimReply:
        self.claims.append(request.id)
        return await super().claim(request, worker)


@pytest.fixture
async def execution_api(api: TestClient) -> AsyncIterator[CountingApi]:
    async with aiohttp.ClientSession() as session:
        yield CountingApi(session, api_url(api), timeout_s=5.0)


def succeeding(ran: list[tuple[str, int]]) -> Run:
    async def run(request: ExecutionRequest, attempt: int) -> ExecutionResult:
        ran.append((request.id, attempt))
        return ExecutionResult(status="succeeded", output={"ran": request.id}, started_at=time.time())

    return run


@dataclass
class Scene:
    """The real service with a saved workflow, its streams, and the worker's counted HTTP API."""

    api: TestClient
    project: Project
    run_url: str
    execution_api: CountingApi
    redis: redis.Redis
    streams: Streams

    async def queue(self) -> str:
        """An execution the service queued (a dashboard run with wait=false); its id."""
        response = await self.api.post(f"{self.run_url}?wait=false", json={}, headers=self.project.dashboard)
        assert response.status == 202, await response.text()
        return str((await response.json())["id"])

    async def until_status(self, execution_id: str, status: str) -> dict[str, Any]:
        return await until_status(self.api, self.project, execution_id, status)

    async def reports(self) -> list[StartedReport | ResultReport]:
        entries = cast(list[tuple[bytes, dict[bytes, bytes]]], await self.redis.xrange(self.streams.results))
        return [report_decoder.decode(fields[FIELD_MESSAGE]) for _id, fields in entries]

    async def pending_requests(self) -> int:
        return int((await self.redis.xpending(self.streams.executions, EXECUTIONS_GROUP))["pending"])

    async def leave_pending(self) -> ExecutionRequest:
        """A worker that read the next request and died: it stays pending under that consumer."""
        executions = self.streams.executions
        await ensure_group(self.redis, executions, EXECUTIONS_GROUP)
        reply = await self.redis.xreadgroup(EXECUTIONS_GROUP, "w-dead", {executions: ">"}, count=1, block=2000)
        entries = cast(list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]], reply)
        assert entries, "no execution request arrived on the stream"
        return request_decoder.decode(entries[0][1][0][1][FIELD_MESSAGE])

    @contextlib.asynccontextmanager
    async def consuming(self, run: Run, reclaim_after_ms: int = 15_000) -> AsyncIterator[ExecutionConsumer]:
        consumer = ExecutionConsumer(
            self.redis, self.streams.executions, self.streams.results, "w-test", self.execution_api, run,
            block_ms=50, reclaim_after_ms=reclaim_after_ms,
        )  # fmt: skip
        await consumer.ensure_group()
        task = asyncio.create_task(consumer.run())
        try:
            yield consumer
        finally:
            await consumer.stop(timeout_s=5)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), 2)
            await cancel_and_wait(task)


@pytest.fixture
async def scene(
    api: TestClient, project: Project, execution_api: CountingApi, redis_client: redis.Redis, streams: Streams
) -> Scene:
    response = await api.put(f"/api/projects/{project.id}/workflows/stripe", json=WORKFLOW, headers=project.dashboard)
    assert response.status == 201, await response.text()
    run_url = f"/api/projects/{project.id}/workflows/stripe/executions"
    return Scene(api, project, run_url, execution_api, redis_client, streams)


async def test_a_first_delivery_runs_unclaimed_and_hands_its_result_over_with_the_ack(scene: Scene) -> None:
    ran: list[tuple[str, int]] = []
    async with scene.consuming(succeeding(ran)):
        execution_id = await scene.queue()
        recorded = await scene.until_status(execution_id, "succeeded")
    assert ran == [(execution_id, 1)] and scene.execution_api.claims == []
    assert await scene.pending_requests() == 0
    [report] = await scene.reports()
    assert isinstance(report, ResultReport) and report.id == execution_id
    assert (report.result.worker, report.result.attempt, report.result.output) == ("w-test", 1, {"ran": execution_id})
    assert (recorded["worker"], recorded["attempt"], recorded["output"]) == ("w-test", 1, {"ran": execution_id})


async def test_a_dashboard_run_is_answered_through_the_consumer(scene: Scene) -> None:
    async with scene.consuming(succeeding([])):
        response = await scene.api.post(scene.run_url, json={}, headers=scene.project.dashboard)
        body = await response.json()
    assert response.status == 201, body
    assert (body["status"], body["worker"], body["output"]) == ("succeeded", "w-test", {"ran": body["id"]})


async def test_a_long_execution_is_reported_started_before_its_result(scene: Scene) -> None:
    seen_running: list[dict[str, Any]] = []

    async def run(request: ExecutionRequest, attempt: int) -> ExecutionResult:
        began = time.time()
        seen_running.append(await scene.until_status(request.id, "running"))  # still running here
        assert time.time() - began >= STARTED_NOTICE_S * 0.9
        return ExecutionResult(status="succeeded", started_at=began)

    async with scene.consuming(run):
        execution_id = await scene.queue()
        await scene.until_status(execution_id, "succeeded")
    started, result = await scene.reports()
    assert isinstance(started, StartedReport) and isinstance(result, ResultReport)
    assert (started.id, started.worker, started.attempt) == (execution_id, "w-test", 1)
    [running] = seen_running
    assert (running["worker"], running["attempt"]) == ("w-test", 1)
    assert running["started_at"] == rfc3339(started.started_at)


async def test_a_short_execution_sends_no_started_report(scene: Scene) -> None:
    async with scene.consuming(succeeding([])):
        execution_id = await scene.queue()
        await scene.until_status(execution_id, "succeeded")
        await asyncio.sleep(STARTED_NOTICE_S + 0.1)  # a notice would have fired by now
    assert [type(report) for report in await scene.reports()] == [ResultReport]


async def test_a_reclaimed_execution_is_claimed_over_http_and_runs_with_the_claimed_attempt(scene: Scene) -> None:
    execution_id = await scene.queue()
    await scene.leave_pending()  # w-dead ran it unclaimed (a first delivery) and died
    await asyncio.sleep(0.15)  # idle past reclaim_after_ms
    ran: list[tuple[str, int]] = []
    async with scene.consuming(succeeding(ran), reclaim_after_ms=100):
        recorded = await scene.until_status(execution_id, "succeeded")
    # The reclaim is the second attempt, though the first never claimed.
    assert ran == [(execution_id, 2)] and scene.execution_api.claims == [execution_id]
    assert (recorded["worker"], recorded["attempt"]) == ("w-test", 2)
    [report] = await scene.reports()
    assert isinstance(report, ResultReport) and report.result.attempt == 2
    assert await scene.pending_requests() == 0


async def test_a_reclaimed_execution_that_already_finished_is_acked_and_not_run(scene: Scene) -> None:
    execution_id = await scene.queue()
    request = await scene.leave_pending()
    await scene.execution_api.record(request, ExecutionResult(status="succeeded", worker="w-dead"))  # then it died
    await asyncio.sleep(0.15)
    ran: list[tuple[str, int]] = []
    async with scene.consuming(succeeding(ran), reclaim_after_ms=100):

        async def acked() -> bool:
            return await scene.pending_requests() == 0

        await eventually(acked, "the reclaimed message to be acked")
    assert ran == [] and scene.execution_api.claims == [execution_id]
    assert await scene.reports() == []
    assert (await record(scene.api, scene.project, execution_id))["worker"] == "w-dead"
