"""The service reads workers' reports from the results stream: what it records, answers and acks.

A worker reports by XADDing `{m: report}` to `<prefix>:results`; the fake worker here only reads
the executions stream (for the execution's grant) and the test hands its reports over by hand.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

import msgspec
import pytest
import redis.asyncio as redis
from aiohttp.test_utils import TestClient

from contract.executions import (
    FIELD_MESSAGE,
    RESULTS_GROUP,
    ExecutionRequest,
    ExecutionResult,
    HttpReply,
    Report,
    ResultReport,
    StartedReport,
    report_encoder,
)
from contract.streams import Streams
from service.app import create_app
from service.clock import rfc3339
from service.settings import Settings
from tests.conftest import Project
from tests.service.fake_worker import FakeWorker
from tests.service.test_hooks_api import WORKFLOW, failed, succeeded
from tests.support.executions import eventually, record, until_status

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
def worker(api: TestClient, redis_client: redis.Redis, streams: Streams) -> FakeWorker:
    return FakeWorker(api, redis_client, streams.executions)


@pytest.fixture
async def workflow(api: TestClient, project: Project) -> str:
    response = await api.put(f"/api/projects/{project.id}/workflows/stripe", json=WORKFLOW, headers=project.dashboard)
    assert response.status == 201, await response.text()
    return "stripe"


async def hand_over(client: redis.Redis, streams: Streams, report: Report) -> bytes:
    """What a worker does: the report on the results stream. Returns its entry id."""
    fields: Any = {FIELD_MESSAGE: report_encoder.encode(report)}
    return cast(bytes, await client.xadd(streams.results, fields))


def result_report(request: ExecutionRequest, outcome: ExecutionResult | None = None, **changes: Any) -> ResultReport:
    """A report on `request` with its own grant: `outcome` (default: succeeded) with `changes`."""
    result = msgspec.structs.replace(outcome or succeeded(request.id), **changes)
    return ResultReport(id=request.id, project=request.project, grant=request.grant, result=result)


async def start(api: TestClient, project: Project, workflow: str, worker: FakeWorker) -> ExecutionRequest:
    """A queued execution (wait=false), as the worker receives it."""
    url = f"/api/projects/{project.id}/workflows/{workflow}/executions?wait=false"
    response = await api.post(url, json={"n": 1}, headers=project.dashboard)
    assert response.status == 202, await response.text()
    return await worker.next_request()


def _stream_id(entry_id: bytes) -> tuple[int, int]:
    millis, seq = entry_id.split(b"-")
    return int(millis), int(seq)


async def until_acked(client: redis.Redis, streams: Streams, entry_id: bytes) -> None:
    """The service read the results stream up to `entry_id` and left nothing pending."""

    async def acked() -> bool:
        groups = await client.xinfo_groups(streams.results)
        group = next((g for g in groups if g["name"] == RESULTS_GROUP.encode()), None)
        if group is None or _stream_id(group["last-delivered-id"]) < _stream_id(entry_id):
            return False
        return int(group["pending"]) == 0

    await eventually(acked, f"report {entry_id!r} to be read and acked")
    assert (await client.xpending(streams.results, RESULTS_GROUP))["pending"] == 0


async def test_a_result_report_is_recorded_with_its_attempt_worker_and_start(
    api: TestClient, project: Project, workflow: str, worker: FakeWorker, redis_client: redis.Redis, streams: Streams
) -> None:
    request = await start(api, project, workflow, worker)
    began = time.time() - 1.5
    report = result_report(request, worker="w-7", attempt=3, started_at=began, output={"paid": True})
    entry = await hand_over(redis_client, streams, report)
    recorded = await until_status(api, project, request.id, "succeeded")
    assert (recorded["attempt"], recorded["worker"], recorded["started_at"]) == (3, "w-7", rfc3339(began))
    assert recorded["output"] == {"paid": True} and recorded["finished_at"] is not None
    await until_acked(redis_client, streams, entry)


async def test_a_result_report_answers_the_waiting_hook_caller(
    api: TestClient, project: Project, workflow: str, worker: FakeWorker, redis_client: redis.Redis, streams: Streams
) -> None:
    caller = asyncio.create_task(api.post(f"/hooks/{project.id}/{workflow}", json={"type": "invoice.paid"}))
    request = await worker.next_request()
    reply = HttpReply(status=202, headers={"X-Reply": "stream"}, body={"received": True})
    await hand_over(redis_client, streams, result_report(request, response=reply))
    response = await asyncio.wait_for(caller, 5)
    assert (response.status, await response.json()) == (202, {"received": True})
    assert response.headers["X-Reply"] == "stream" and response.headers["X-Execution-Id"] == request.id


async def test_a_failed_result_report_answers_the_hook_caller_with_its_error(
    api: TestClient, project: Project, workflow: str, worker: FakeWorker, redis_client: redis.Redis, streams: Streams
) -> None:
    caller = asyncio.create_task(api.post(f"/hooks/{project.id}/{workflow}", json={}))
    request = await worker.next_request()
    await hand_over(redis_client, streams, result_report(request, outcome=failed("invalid_signature", 400)))
    response = await asyncio.wait_for(caller, 5)
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "invalid_signature"


async def test_a_result_report_answers_the_waiting_dashboard_run(
    api: TestClient, project: Project, workflow: str, worker: FakeWorker, redis_client: redis.Redis, streams: Streams
) -> None:
    url = f"/api/projects/{project.id}/workflows/{workflow}/executions"
    caller = asyncio.create_task(api.post(url, json={"n": 2}, headers=project.dashboard))
    request = await worker.next_request()
    await hand_over(redis_client, streams, result_report(request, worker="w-dash", output="done"))
    response = await asyncio.wait_for(caller, 5)
    body = await response.json()
    assert response.status == 201, body
    assert (body["id"], body["status"], body["output"], body["worker"]) == (request.id, "succeeded", "done", "w-dash")


async def test_a_started_report_marks_a_queued_execution_running(
    api: TestClient, project: Project, workflow: str, worker: FakeWorker, redis_client: redis.Redis, streams: Streams
) -> None:
    request = await start(api, project, workflow, worker)
    began = time.time() - 0.5
    started = StartedReport(
        id=request.id, project=project.id, grant=request.grant, worker="w-2", attempt=2, started_at=began
    )
    entry = await hand_over(redis_client, streams, started)
    running = await until_status(api, project, request.id, "running")
    assert (running["worker"], running["attempt"], running["started_at"]) == ("w-2", 2, rfc3339(began))
    assert running["finished_at"] is None
    await until_acked(redis_client, streams, entry)


def started_with(request: ExecutionRequest, grant: str) -> StartedReport:
    return StartedReport(id=request.id, project=request.project, grant=grant, worker="intruder", attempt=5)


@pytest.mark.parametrize("kind", ["result", "started"])
async def test_a_report_with_an_unknown_grant_is_acked_and_changes_nothing(
    api: TestClient,
    project: Project,
    workflow: str,
    worker: FakeWorker,
    redis_client: redis.Redis,
    streams: Streams,
    kind: str,
) -> None:
    request = await start(api, project, workflow, worker)
    before = await record(api, project, request.id)
    forged = "bsg_never-minted"
    report: Report = (
        started_with(request, forged)
        if kind == "started"
        else ResultReport(id=request.id, project=project.id, grant=forged, result=succeeded("forged"))
    )
    await until_acked(redis_client, streams, await hand_over(redis_client, streams, report))
    assert await record(api, project, request.id) == before
    assert before["status"] == "queued"


async def test_a_report_with_another_executions_grant_is_acked_and_changes_nothing(
    api: TestClient, project: Project, workflow: str, worker: FakeWorker, redis_client: redis.Redis, streams: Streams
) -> None:
    one, two = [await start(api, project, workflow, worker) for _ in range(2)]
    before = [await record(api, project, execution.id) for execution in (one, two)]
    crossed = ResultReport(id=one.id, project=project.id, grant=two.grant, result=succeeded("crossed"))
    await hand_over(redis_client, streams, started_with(one, two.grant))
    await until_acked(redis_client, streams, await hand_over(redis_client, streams, crossed))
    assert [await record(api, project, execution.id) for execution in (one, two)] == before


async def test_reports_after_the_first_result_are_acked_and_change_nothing(
    api: TestClient, project: Project, workflow: str, worker: FakeWorker, redis_client: redis.Redis, streams: Streams
) -> None:
    request = await start(api, project, workflow, worker)
    await hand_over(redis_client, streams, result_report(request, output="first", worker="w-1"))
    first = await until_status(api, project, request.id, "succeeded")
    await hand_over(redis_client, streams, result_report(request, outcome=failed("late"), worker="w-2"))
    late_start = started_with(request, request.grant)
    await until_acked(redis_client, streams, await hand_over(redis_client, streams, late_start))
    assert await record(api, project, request.id) == first
    assert (first["output"], first["worker"]) == ("first", "w-1")


async def test_unreadable_entries_are_acked_and_skipped(
    api: TestClient, project: Project, workflow: str, worker: FakeWorker, redis_client: redis.Redis, streams: Streams
) -> None:
    request = await start(api, project, workflow, worker)
    junk: list[Any] = [
        {FIELD_MESSAGE: b"not json"},
        {b"other": b"field"},
        {FIELD_MESSAGE: b'{"kind": "result", "id": 1}'},
        {FIELD_MESSAGE: b'{"kind": "exploded", "id": "x", "project": "p", "grant": "g"}'},
    ]
    for fields in junk:
        await redis_client.xadd(streams.results, fields)
    entry = await hand_over(redis_client, streams, result_report(request, output="after the junk"))
    recorded = await until_status(api, project, request.id, "succeeded")
    assert recorded["output"] == "after the junk"
    await until_acked(redis_client, streams, entry)


@pytest.mark.parametrize("group", ["kept", "missing", "read_not_acked"])
async def test_a_report_added_while_the_service_was_down_is_recorded_when_it_starts(
    aiohttp_client: Callable[..., Awaitable[TestClient]],
    api: TestClient,
    settings: Settings,
    project: Project,
    workflow: str,
    worker: FakeWorker,
    redis_client: redis.Redis,
    streams: Streams,
    group: str,
) -> None:
    request = await start(api, project, workflow, worker)
    await api.close()
    if group == "missing":
        await redis_client.xgroup_destroy(streams.results, RESULTS_GROUP)
    entry = await hand_over(redis_client, streams, result_report(request, output="while down", worker="w-9"))
    if group == "read_not_acked":  # an earlier run read it and stopped before recording it
        await redis_client.xreadgroup(RESULTS_GROUP, "service", {streams.results: ">"}, count=10)
        assert (await redis_client.xpending(streams.results, RESULTS_GROUP))["pending"] == 1
    restarted = await aiohttp_client(create_app(settings))
    recorded = await until_status(restarted, project, request.id, "succeeded")
    assert (recorded["output"], recorded["worker"]) == ("while down", "w-9")
    await until_acked(redis_client, streams, entry)
