"""Webhooks and dashboard runs read workflows from memory: a committed change is what the next call runs.

The fake worker answers each execution the way the engine would: with the body its `respond`
node's definition says, so the caller sees which version ran.
"""

import asyncio
from typing import Any

import pytest
import redis.asyncio as redis
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from contract.executions import ExecutionRequest, HttpReply, ResultReport
from contract.streams import Streams
from tests.conftest import CreateProject, Project, admin_headers
from tests.service.fake_worker import FakeWorker
from tests.service.test_hooks_api import succeeded
from tests.service.test_results import hand_over
from tests.support.api import expect_error

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
def worker(api: TestClient, redis_client: redis.Redis, streams: Streams) -> FakeWorker:
    return FakeWorker(api, redis_client, streams.executions)


def replying(body: Any, trigger: str = "webhook") -> dict[str, Any]:
    return {
        "trigger": {"type": trigger},
        "nodes": [{"id": "reply", "type": "respond", "config": {"status": 200, "body": body}}],
    }


async def save(api: TestClient, project: Project, name: str, definition: dict[str, Any]) -> int:
    response = await api.put(f"/api/projects/{project.id}/workflows/{name}", json=definition, headers=project.dashboard)
    assert response.status in (200, 201), await response.text()
    return int((await response.json())["version"])


def hook_url(project: Project, name: str) -> str:
    return f"/hooks/{project.id}/{name}"


async def answer(worker: FakeWorker, streams: Streams) -> ExecutionRequest:
    """Run the next execution as the engine would: reply with its respond node's body."""
    request = await worker.next_request()
    body = request.definition["nodes"][-1]["config"]["body"]
    report = ResultReport(
        id=request.id, project=request.project, grant=request.grant, result=succeeded(None, HttpReply(body=body))
    )
    await hand_over(worker.redis, streams, report)
    return request


async def call_hook(api: TestClient, worker: FakeWorker, streams: Streams, url: str) -> tuple[Any, ExecutionRequest]:
    """A webhook call that runs: its JSON answer, and the request the worker got."""
    caller = asyncio.create_task(api.post(url, json={}))
    request = await answer(worker, streams)
    response: ClientResponse = await asyncio.wait_for(caller, 5)
    assert response.status == 200, await response.text()
    return await response.json(), request


async def test_a_missing_workflow_is_404_then_runs_once_saved(
    api: TestClient, project: Project, worker: FakeWorker, streams: Streams
) -> None:
    await expect_error(await api.post(hook_url(project, "late"), json={}), 404, "workflow_not_found")
    await save(api, project, "late", replying({"v": 1}))
    body, request = await call_hook(api, worker, streams, hook_url(project, "late"))
    assert body == {"v": 1} and (request.workflow, request.workflow_version) == ("late", 1)


async def test_every_change_is_run_by_the_very_next_hook(
    api: TestClient, project: Project, worker: FakeWorker, streams: Streams
) -> None:
    for n in range(1, 5):
        version = await save(api, project, "stripe", replying({"v": n}))
        body, request = await call_hook(api, worker, streams, hook_url(project, "stripe"))
        assert body == {"v": n} and request.workflow_version == version == n
        assert request.definition == replying({"v": n})


async def test_a_deleted_workflow_is_404_at_once(
    api: TestClient, project: Project, worker: FakeWorker, streams: Streams
) -> None:
    await save(api, project, "stripe", replying({"here": True}))
    assert (await call_hook(api, worker, streams, hook_url(project, "stripe")))[0] == {"here": True}
    deleted = await api.delete(f"/api/projects/{project.id}/workflows/stripe", headers=project.dashboard)
    assert deleted.status == 204, await deleted.text()
    await expect_error(await api.post(hook_url(project, "stripe"), json={}), 404, "workflow_not_found")
    run_url = f"/api/projects/{project.id}/workflows/stripe/executions"
    await expect_error(await api.post(run_url, json={}, headers=project.dashboard), 404, "workflow_not_found")


async def test_a_workflow_changed_to_a_manual_trigger_is_no_longer_a_hook(
    api: TestClient, project: Project, worker: FakeWorker, streams: Streams
) -> None:
    await save(api, project, "stripe", replying({"hook": True}))
    assert (await call_hook(api, worker, streams, hook_url(project, "stripe")))[0] == {"hook": True}
    await save(api, project, "stripe", replying({"hook": False}, trigger="manual"))
    await expect_error(await api.post(hook_url(project, "stripe"), json={}), 404, "workflow_not_found")


async def test_a_deleted_projects_hooks_are_404_and_other_projects_keep_theirs(
    api: TestClient, project: Project, worker: FakeWorker, streams: Streams, create_project: CreateProject
) -> None:
    other = await create_project("Other")
    for owner in (project, other):
        await save(api, owner, "stripe", replying({"project": owner.id}))
        assert (await call_hook(api, worker, streams, hook_url(owner, "stripe")))[0] == {"project": owner.id}
    deleted = await api.delete(f"/api/projects/{project.id}", headers=admin_headers())
    assert deleted.status == 204, await deleted.text()
    await expect_error(await api.post(hook_url(project, "stripe"), json={}), 404, "workflow_not_found")
    assert (await call_hook(api, worker, streams, hook_url(other, "stripe")))[0] == {"project": other.id}


async def test_a_dashboard_run_uses_what_was_just_saved(
    api: TestClient, project: Project, worker: FakeWorker, streams: Streams
) -> None:
    run_url = f"/api/projects/{project.id}/workflows/manual/executions"
    await expect_error(await api.post(run_url, json={}, headers=project.dashboard), 404, "workflow_not_found")
    for n in (1, 2):
        await save(api, project, "manual", replying({"v": n}, trigger="manual"))
        caller = asyncio.create_task(api.post(run_url, json={}, headers=project.dashboard))
        request = await answer(worker, streams)
        record = await (await asyncio.wait_for(caller, 5)).json()
        assert (record["workflow_version"], record["response"]["body"]) == (n, {"v": n})
        assert request.workflow_version == n
