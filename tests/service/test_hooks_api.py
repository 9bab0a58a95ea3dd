"""POST /hooks/{p}/{workflow}: the request goes to a worker through the stream, the caller gets its answer.

A fake worker (tests/service/fake_worker.py) stands in for the engine: it reads the executions
stream through the consumer group, claims with the grant and posts the result.
"""

import asyncio
import base64
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as redis
from aiohttp.test_utils import TestClient

from contract.executions import ErrorInfo, ExecutionRequest, ExecutionResult, HttpReply, NodeRecord
from contract.streams import Streams
from service.app import create_app
from service.settings import Settings
from tests.conftest import Project, admin_headers
from tests.service.fake_worker import FakeWorker
from tests.support.api import expect_error

pytestmark = pytest.mark.timeout(30)

WORKFLOW: dict[str, Any] = {
    "trigger": {"type": "webhook"},
    "nodes": [
        {"id": "verify", "type": "verify_webhook", "config": {"scheme": "stripe", "secret": "${ secrets.STRIPE_KEY }"}},
        {"id": "reply", "type": "respond", "config": {"status": 202, "body": {"received": True}}},
    ],
}


@pytest.fixture
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    return dataclasses.replace(settings, **getattr(request, "param", {}))


@pytest.fixture
def worker(api: TestClient, redis_client: redis.Redis, streams: Streams) -> FakeWorker:
    return FakeWorker(api, redis_client, streams.executions)


@pytest.fixture
async def hook(api: TestClient, project: Project) -> str:
    response = await api.put(f"/api/projects/{project.id}/workflows/stripe", json=WORKFLOW, headers=project.dashboard)
    assert response.status == 201, await response.text()
    return f"/hooks/{project.id}/stripe"


def succeeded(output: Any = None, response: HttpReply | None = None) -> ExecutionResult:
    now = time.time()
    nodes = [NodeRecord(id="reply", type="respond", status="succeeded", started_at=now, finished_at=now, output=output)]
    return ExecutionResult(status="succeeded", nodes=nodes, output=output, response=response, worker="fake")


def failed(code: str, http_status: int | None = None) -> ExecutionResult:
    error = ErrorInfo(code=code, message=f"{code} happened", node_id="verify", http_status=http_status)
    node = NodeRecord(id="verify", type="verify_webhook", status="failed", error=error)
    return ExecutionResult(status="failed", nodes=[node], error=error)


async def test_the_caller_gets_the_respond_reply_and_the_worker_gets_the_request(
    api: TestClient, project: Project, hook: str, worker: FakeWorker
) -> None:
    reply = HttpReply(status=202, headers={"X-Reply": "yes"}, body={"received": True})
    raw = b'{"type": "invoice.paid", "data": {"amount": 42}}'
    async with worker.serving(lambda request: succeeded({"status": 202}, reply)):
        response = await api.post(
            f"{hook}?source=stripe",
            data=raw,
            headers={"Content-Type": "application/json", "Stripe-Signature": "t=1,v1=abc", "X-Multi": "a"},
        )
        assert response.status == 202, await response.text()
        assert await response.json() == {"received": True}
    assert response.headers["X-Reply"] == "yes" and response.content_type == "application/json"
    [request] = worker.seen
    assert response.headers["X-Execution-Id"] == request.id
    assert (request.project, request.workflow, request.workflow_version) == (project.id, "stripe", 1)
    assert request.revision == 1  # the project's revision when it was created: saving the workflow made it 1
    assert request.definition["nodes"][0]["config"]["secret"] == "${ secrets.STRIPE_KEY }"
    assert request.grant.startswith("bsg_") and 25 < request.deadline - time.time() <= 30
    data = request.input
    assert data.method == "POST" and data.query == {"source": "stripe"}
    assert data.headers["stripe-signature"] == "t=1,v1=abc" and data.headers["x-multi"] == "a"
    assert data.body == {"type": "invoice.paid", "data": {"amount": 42}}
    assert base64.b64decode(data.raw_body) == raw
    record = await (
        await api.get(f"/api/projects/{project.id}/executions/{request.id}", headers=project.dashboard)
    ).json()
    assert (record["status"], record["attempt"], record["worker"]) == ("succeeded", 1, "fake")
    assert record["response"] == {"status": 202, "headers": {"X-Reply": "yes"}, "body": {"received": True}}


async def test_a_non_json_body_arrives_raw(api: TestClient, hook: str, worker: FakeWorker) -> None:
    async with worker.serving(lambda request: succeeded("ok")):
        response = await api.post(hook, data=b"a=1&b=2", headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert response.status == 200
    [request] = worker.seen
    assert request.input.body is None and base64.b64decode(request.input.raw_body) == b"a=1&b=2"


async def test_without_a_reply_the_last_output_is_the_answer(api: TestClient, hook: str, worker: FakeWorker) -> None:
    async with worker.serving(lambda request: succeeded({"total": 3, "items": ["a"]})):
        response = await api.post(hook, json={})
        assert (response.status, await response.json()) == (200, {"total": 3, "items": ["a"]})


async def test_a_text_reply_goes_out_as_text(api: TestClient, hook: str, worker: FakeWorker) -> None:
    reply = HttpReply(status=200, headers={"Content-Type": "text/csv"}, body="a,b\n1,2\n")
    async with worker.serving(lambda request: succeeded(None, reply)):
        response = await api.post(hook, json={})
        assert (response.status, response.content_type, await response.text()) == (200, "text/csv", "a,b\n1,2\n")


@pytest.mark.parametrize(("http_status", "expected"), [(400, 400), (None, 500)])
async def test_a_failed_execution_answers_with_its_error(
    api: TestClient, hook: str, worker: FakeWorker, http_status: int | None, expected: int
) -> None:
    async with worker.serving(lambda request: failed("invalid_signature", http_status)):
        response = await api.post(hook, json={})
        body = await response.json()
    assert response.status == expected
    assert body == {
        "error": {
            "code": "invalid_signature",
            "message": "invalid_signature happened",
            "execution_id": worker.seen[0].id,
        }
    }


async def test_concurrent_callers_each_get_their_own_result(api: TestClient, hook: str, worker: FakeWorker) -> None:
    def echo(request: ExecutionRequest) -> ExecutionResult:
        return succeeded(None, HttpReply(body={"echo": request.input.body}))

    async with worker.serving(echo):
        responses = await asyncio.gather(*(api.post(hook, json={"n": n}) for n in range(8)))
        bodies = [await response.json() for response in responses]
    assert bodies == [{"echo": {"n": n}} for n in range(8)]


async def test_unknown_project_workflow_or_trigger_is_404(api: TestClient, project: Project, hook: str) -> None:
    manual = {**WORKFLOW, "trigger": {"type": "manual"}}
    await api.put(f"/api/projects/{project.id}/workflows/by-hand", json=manual, headers=project.dashboard)
    for path in (
        "/hooks/no-such-project/stripe",
        f"/hooks/{project.id}/nope",
        f"/hooks/{project.id}/by-hand",
        f"/hooks/{project.id}/bad%20name",
    ):
        await expect_error(await api.post(path, json={}), 404, "workflow_not_found")


@pytest.mark.parametrize("settings", [{"hook_timeout_s": 0.5}], indirect=True)
async def test_no_result_in_time_is_504_and_the_execution_times_out(
    api: TestClient, project: Project, hook: str, worker: FakeWorker
) -> None:
    started = time.monotonic()
    response = await api.post(hook, json={})
    body = await response.json()
    assert response.status == 504 and 0.4 < time.monotonic() - started < 3
    request = await worker.next_request()
    assert body["error"]["code"] == "execution_timeout" and body["error"]["execution_id"] == request.id
    record_url = f"/api/projects/{project.id}/executions/{request.id}"
    record = await (await api.get(record_url, headers=project.dashboard)).json()
    assert (record["status"], record["error"]["code"]) == ("timed_out", "execution_timeout")
    await expect_error(await worker.claim(request), 409, "execution_finished")
    await expect_error(await worker.report(request, succeeded("late")), 409, "execution_finished")


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[int]:
    """A TCP server that accepts and never answers: a Redis that hangs."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("settings", [{"redis_url": "redis://127.0.0.1:1/0"}], indirect=True)
async def test_redis_down_fails_fast_with_503(api: TestClient, project: Project, hook: str) -> None:
    started = time.monotonic()
    await expect_error(await api.post(hook, json={}), 503, "queue_unavailable")
    assert time.monotonic() - started < 1.5
    listed = await (await api.get(f"/api/projects/{project.id}/executions", headers=project.dashboard)).json()
    assert [(e["status"], e["error"]["code"]) for e in listed["executions"]] == [("failed", "queue_unavailable")]


async def test_a_hanging_redis_fails_fast_with_503(aiohttp_client: Any, settings: Settings) -> None:
    async with silent_server() as port:
        api = await aiohttp_client(create_app(dataclasses.replace(settings, redis_url=f"redis://127.0.0.1:{port}/0")))
        created = await (await api.post("/api/projects", json={"name": "Hang"}, headers=admin_headers())).json()
        dashboard = {"Authorization": f"Bearer {created['dashboard_token']}"}
        await api.put(f"/api/projects/{created['id']}/workflows/w", json=WORKFLOW, headers=dashboard)
        started = time.monotonic()
        await expect_error(await api.post(f"/hooks/{created['id']}/w", json={}), 503, "queue_unavailable")
        assert time.monotonic() - started < 2.0
