"""Executions: the dashboard run route, records and paging, the worker's claim/result, grants, retention."""

import asyncio
import base64
import dataclasses
import time

import pytest
import redis.asyncio as redis
from aiohttp.test_utils import TestClient

from contract.executions import ExecutionRequest, ExecutionResult
from contract.streams import Streams
from service.settings import Settings
from service.state import WRITER
from service.store.executions import Retention
from service.store.writer import Transaction
from service.upkeep import UPKEEP_INTERVAL_S, Upkeep, UpkeepPass
from tests.conftest import CreateProject, Project, bearer
from tests.service.fake_worker import FakeWorker, grant_headers
from tests.service.test_hooks_api import WORKFLOW, failed, succeeded
from tests.support.api import assert_rfc3339_utc, expect_error

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    return dataclasses.replace(settings, **getattr(request, "param", {}))


@pytest.fixture
def worker(api: TestClient, redis_client: redis.Redis, streams: Streams) -> FakeWorker:
    return FakeWorker(api, redis_client, streams.executions)


@pytest.fixture
async def run_url(api: TestClient, project: Project) -> str:
    response = await api.put(f"/api/projects/{project.id}/workflows/stripe", json=WORKFLOW, headers=project.dashboard)
    assert response.status == 201, await response.text()
    return f"/api/projects/{project.id}/workflows/stripe/executions"


def executions_url(project: Project, execution_id: str = "") -> str:
    return f"/api/projects/{project.id}/executions" + (f"/{execution_id}" if execution_id else "")


async def start(api: TestClient, run_url: str, project: Project, worker: FakeWorker) -> ExecutionRequest:
    """A queued execution (wait=false), as the worker receives it."""
    response = await api.post(f"{run_url}?wait=false", json={"n": 1}, headers=project.dashboard)
    assert response.status == 202, await response.text()
    return await worker.next_request()


async def test_dashboard_run_returns_the_finished_record(
    api: TestClient, project: Project, run_url: str, worker: FakeWorker
) -> None:
    async with worker.serving(lambda request: succeeded({"ok": request.input.body["n"]})):
        response = await api.post(run_url, json={"n": 7}, headers=project.dashboard)
        record = await response.json()
    assert response.status == 201, record
    assert response.headers["Location"] == executions_url(project, record["id"])
    assert (record["status"], record["workflow"], record["workflow_version"]) == ("succeeded", "stripe", 1)
    assert record["output"] == {"ok": 7} and record["nodes"][0]["id"] == "reply" and record["error"] is None
    assert (record["attempt"], record["worker"], record["project"]) == (1, "fake", project.id)
    for stamp in ("created_at", "started_at", "finished_at"):
        assert_rfc3339_utc(record[stamp])
    [request] = worker.seen
    assert request.input.body == {"n": 7} and base64.b64decode(request.input.raw_body) == b'{"n": 7}'
    assert "authorization" not in request.input.headers  # the dashboard token never reaches a workflow
    fetched = await api.get(executions_url(project, record["id"]), headers=project.dashboard)
    assert await fetched.json() == record


async def test_an_execution_read_while_its_row_is_being_written_waits_for_it(
    api: TestClient, project: Project, run_url: str, worker: FakeWorker
) -> None:
    """A worker may hold the request before its row commits; a read of it in that moment waits."""
    release = asyncio.Event()

    async def hold_the_writer(tx: Transaction) -> None:
        await asyncio.wait_for(release.wait(), 5)  # mid-batch: what is queued behind it waits

    held = asyncio.ensure_future(api.app[WRITER].submit(hold_the_writer, durable=False))
    try:
        run = asyncio.create_task(api.post(run_url, json={"n": 1}, headers=project.dashboard))
        request = await worker.next_request()  # queued to Redis; its row waits behind the held writer
        read = asyncio.create_task(api.get(executions_url(project, request.id), headers=project.dashboard))
        await asyncio.sleep(0.1)
        assert not read.done()
    finally:
        release.set()
    response = await read
    assert response.status == 200, await response.text()
    assert (await response.json())["status"] == "queued"
    await worker.run_one(lambda _: succeeded({"ok": 1}), request)
    assert (await run).status == 201
    await held


async def test_a_failed_run_is_still_a_201_record(
    api: TestClient, project: Project, run_url: str, worker: FakeWorker
) -> None:
    async with worker.serving(lambda request: failed("secret_not_found")):
        record = await (await api.post(run_url, headers=project.dashboard)).json()
    assert record["status"] == "failed"
    assert record["error"] == {
        "code": "secret_not_found",
        "message": "secret_not_found happened",
        "node_id": "verify",
        "http_status": None,
    }
    assert worker.seen[0].input.body is None


async def test_run_errors(api: TestClient, project: Project, run_url: str, create_project: CreateProject) -> None:
    other = await create_project("Other")
    missing = f"/api/projects/{project.id}/workflows/nope/executions"
    await expect_error(await api.post(missing, json={}, headers=project.dashboard), 404, "workflow_not_found")
    await expect_error(await api.post(run_url, json={}, headers=other.dashboard), 404)
    await expect_error(await api.post(run_url, json={}), 401)
    await expect_error(await api.post(run_url, data=b"x", headers=project.dashboard), 415)
    bad_json = {**project.dashboard, "Content-Type": "application/json"}
    await expect_error(await api.post(run_url, data=b"{", headers=bad_json), 400)
    await expect_error(await api.get(executions_url(project, "ex_nope"), headers=project.dashboard), 404)


async def test_records_of_another_project_are_not_found(
    api: TestClient, project: Project, run_url: str, worker: FakeWorker, create_project: CreateProject
) -> None:
    other = await create_project("Other")
    request = await start(api, run_url, project, worker)
    await expect_error(await api.get(executions_url(other, request.id), headers=other.dashboard), 404)
    await expect_error(await api.get(executions_url(project, request.id), headers=other.dashboard), 404)


async def test_the_list_pages_newest_first(api: TestClient, project: Project, run_url: str, worker: FakeWorker) -> None:
    ids = [(await start(api, run_url, project, worker)).id for _ in range(5)]
    seen: list[str] = []
    before: str | None = None
    pages = 0
    while True:
        query = f"?limit=2&before={before}" if before else "?limit=2"
        page = await (await api.get(executions_url(project) + query, headers=project.dashboard)).json()
        seen += [e["id"] for e in page["executions"]]
        pages += 1
        before = page["next_before"]
        if before is None:
            break
    assert seen == ids[::-1] and pages == 3
    first = (await (await api.get(executions_url(project), headers=project.dashboard)).json())["executions"][0]
    assert first["status"] == "queued" and "nodes" not in first
    filtered = await api.get(executions_url(project) + "?workflow=other", headers=project.dashboard)
    assert (await filtered.json())["executions"] == []
    for bad in ("?limit=0", "?limit=201", "?limit=x", "?before="):
        await expect_error(await api.get(executions_url(project) + bad, headers=project.dashboard), 422)


async def test_claims_count_attempts_and_the_first_result_wins(
    api: TestClient, project: Project, run_url: str, worker: FakeWorker
) -> None:
    request = await start(api, run_url, project, worker)
    first, second = await worker.claim(request, "w1"), await worker.claim(request, "w2")
    assert (await first.json(), await second.json()) == ({"attempt": 1}, {"attempt": 2})
    running = await (await api.get(executions_url(project, request.id), headers=project.dashboard)).json()
    assert (running["status"], running["attempt"], running["worker"]) == ("running", 2, "w2")
    recorded = await worker.report(request, succeeded("first"))
    assert (recorded.status, await recorded.json()) == (200, {"id": request.id, "status": "succeeded"})
    await expect_error(await worker.report(request, failed("late")), 409, "execution_finished")
    await expect_error(await worker.claim(request), 409, "execution_finished")
    final = await (await api.get(executions_url(project, request.id), headers=project.dashboard)).json()
    assert (final["status"], final["output"], final["error"]) == ("succeeded", "first", None)


async def test_a_result_without_a_claim_is_recorded(
    api: TestClient, project: Project, run_url: str, worker: FakeWorker
) -> None:
    request = await start(api, run_url, project, worker)
    assert (await worker.report(request, failed("invalid_workflow"))).status == 200
    record = await (await api.get(executions_url(project, request.id), headers=project.dashboard)).json()
    # A first delivery runs unclaimed: the attempt is the one the result reports (1 by default).
    assert (record["status"], record["attempt"], record["error"]["code"]) == ("failed", 1, "invalid_workflow")
    assert record["started_at"] is not None


async def test_claim_and_result_need_that_executions_grant(
    api: TestClient, project: Project, run_url: str, worker: FakeWorker
) -> None:
    one, two = [await start(api, run_url, project, worker) for _ in range(2)]
    claim_one = f"/api/engine/{project.id}/executions/{one.id}/claim"
    await expect_error(await api.post(claim_one), 401, "missing_token")
    await expect_error(await api.post(claim_one, headers=project.engine), 403, "wrong_token_scope")
    await expect_error(await api.post(claim_one, headers=bearer("bsg_unknown")), 401, "invalid_token")
    await expect_error(await api.post(claim_one, headers=grant_headers(two)), 404, "execution_not_found")
    result_one = f"/api/engine/{project.id}/executions/{one.id}/result"
    await expect_error(await api.post(result_one, data=b"{}", headers=grant_headers(one)), 415)
    json_headers = {**grant_headers(one), "Content-Type": "application/json"}
    await expect_error(await api.post(result_one, data=b'{"status": "maybe"}', headers=json_headers), 422)
    await expect_error(await api.post(result_one, data=b"{", headers=json_headers), 400)
    assert (await api.post(claim_one, headers=grant_headers(one))).status == 200  # no body: fine


async def test_a_grant_reads_its_projects_secrets_only_while_the_execution_is_open(
    api: TestClient, project: Project, run_url: str, worker: FakeWorker, create_project: CreateProject
) -> None:
    other = await create_project("Other")
    await api.put(
        f"/api/projects/{project.id}/secrets/STRIPE_KEY", json={"value": "whsec_canary"}, headers=project.dashboard
    )
    request = await start(api, run_url, project, worker)
    snapshot = await api.get(f"/api/engine/{project.id}/secrets", headers=grant_headers(request))
    body = await snapshot.text()
    assert snapshot.status == 200 and "STRIPE_KEY" in body and "whsec_canary" not in body
    await expect_error(await api.get(f"/api/engine/{other.id}/secrets", headers=grant_headers(request)), 404)
    await expect_error(await api.get(f"/api/engine/{project.id}/secrets", headers=bearer("bsg_x")), 401)
    assert (await api.get(f"/api/engine/{project.id}/secrets", headers=project.engine)).status == 200
    await worker.claim(request)
    await worker.report(request, succeeded("done"))
    after = await api.get(f"/api/engine/{project.id}/secrets", headers=grant_headers(request))
    await expect_error(after, 401, "grant_expired")


@pytest.mark.parametrize("settings", [{"hook_timeout_s": 0.2, "grant_grace_s": 0.1}], indirect=True)
async def test_a_grant_expires_after_the_deadline_and_a_late_claim_times_out(
    api: TestClient, project: Project, run_url: str, worker: FakeWorker
) -> None:
    request = await start(api, run_url, project, worker)
    assert (await api.get(f"/api/engine/{project.id}/secrets", headers=grant_headers(request))).status == 200
    await asyncio.sleep(max(0.0, request.deadline + 0.15 - time.time()))
    expired = await api.get(f"/api/engine/{project.id}/secrets", headers=grant_headers(request))
    await expect_error(expired, 401, "grant_expired")
    await expect_error(await worker.claim(request), 409, "execution_finished")
    record = await (await api.get(executions_url(project, request.id), headers=project.dashboard)).json()
    assert (record["status"], record["error"]["code"]) == ("timed_out", "execution_timeout")


@pytest.mark.parametrize("settings", [{"hook_timeout_s": 0.2, "grant_grace_s": 0.1}], indirect=True)
async def test_a_result_after_the_grant_expired_is_still_recorded_once(
    api: TestClient, project: Project, run_url: str, worker: FakeWorker
) -> None:
    request = await start(api, run_url, project, worker)
    await worker.claim(request)
    await asyncio.sleep(max(0.0, request.deadline + 0.15 - time.time()))
    assert (await worker.report(request, succeeded("slow"))).status == 200
    await expect_error(await worker.report(request, succeeded("again")), 409, "execution_finished")


async def finish(worker: FakeWorker, request: ExecutionRequest, result: ExecutionResult | None = None) -> None:
    assert (await worker.report(request, result or succeeded(request.id))).status == 200


async def listed_ids(api: TestClient, project: Project) -> list[str]:
    page = await (await api.get(executions_url(project), headers=project.dashboard)).json()
    return [e["id"] for e in page["executions"]]


@pytest.mark.parametrize("settings", [{"executions_keep": 3}], indirect=True)
async def test_retention_keeps_the_newest_per_project_and_never_an_open_one(
    api: TestClient, project: Project, run_url: str, worker: FakeWorker
) -> None:
    ids: list[str] = []
    for _ in range(5):
        request = await start(api, run_url, project, worker)
        ids.append(request.id)
        if len(ids) != 2:  # the second stays open: it is kept
            await finish(worker, request)
    await start(api, run_url, project, worker)
    kept = await listed_ids(api, project)
    assert ids[0] not in kept and ids[2] not in kept and ids[1] in kept
    assert kept[1:] == [ids[4], ids[3], ids[1]]
    await expect_error(await api.get(executions_url(project, ids[0]), headers=project.dashboard), 404)


@pytest.mark.parametrize("settings", [{"executions_max_age_s": 0.3}], indirect=True)
async def test_retention_drops_executions_older_than_the_max_age(
    api: TestClient, project: Project, run_url: str, worker: FakeWorker
) -> None:
    old = await start(api, run_url, project, worker)
    await finish(worker, old)
    await asyncio.sleep(0.4)
    new = await start(api, run_url, project, worker)
    assert await listed_ids(api, project) == [new.id]


async def test_retention_is_per_project(
    api: TestClient, project: Project, run_url: str, worker: FakeWorker, create_project: CreateProject
) -> None:
    other = await create_project("Other")
    await api.put(f"/api/projects/{other.id}/workflows/stripe", json=WORKFLOW, headers=other.dashboard)
    mine = await start(api, run_url, project, worker)
    await finish(worker, mine)
    other_run = f"/api/projects/{other.id}/workflows/stripe/executions"
    theirs = await start(api, other_run, other, worker)
    assert await listed_ids(api, project) == [mine.id]
    assert await listed_ids(api, other) == [theirs.id]


async def test_record_shape(api: TestClient, project: Project, run_url: str, worker: FakeWorker) -> None:
    request = await start(api, run_url, project, worker)
    record = await (await api.get(executions_url(project, request.id), headers=project.dashboard)).json()
    assert set(record) == {
        "id",
        "project",
        "workflow",
        "workflow_version",
        "status",
        "attempt",
        "worker",
        "created_at",
        "started_at",
        "finished_at",
        "error",
        "nodes",
        "output",
        "response",
    }
    assert (record["status"], record["attempt"], record["started_at"], record["nodes"]) == ("queued", 0, None, [])


async def test_the_queued_record_is_what_the_api_shows(
    api: TestClient, project: Project, run_url: str, worker: FakeWorker
) -> None:
    response = await api.post(f"{run_url}?wait=false", json={"n": 1}, headers=project.dashboard)
    queued = await response.json()
    fetched = await api.get(executions_url(project, queued["id"]), headers=project.dashboard)
    assert await fetched.json() == queued
    request = await worker.next_request()
    assert request.id == queued["id"] and request.revision >= 1


@pytest.mark.parametrize("settings", [{"hook_timeout_s": 0.2, "grant_grace_s": 0.1}], indirect=True)
async def test_an_open_execution_past_its_deadline_is_timed_out_by_a_later_create(
    api: TestClient, project: Project, run_url: str, worker: FakeWorker
) -> None:
    abandoned = await start(api, run_url, project, worker)  # nobody waits, no worker claims
    await asyncio.sleep(UPKEEP_INTERVAL_S + 0.1)  # past its grant's expiry, and the next pass is due
    await start(api, run_url, project, worker)
    record = await (await api.get(executions_url(project, abandoned.id), headers=project.dashboard)).json()
    assert (record["status"], record["error"]["code"]) == ("timed_out", "execution_timeout")


def test_upkeep_runs_now_and_then_not_with_every_create() -> None:
    now = [0.0]
    upkeep = Upkeep(Retention(keep=1000, max_age_s=0), interval_s=1.0, clock=lambda: now[0])
    assert upkeep.due("p") == UpkeepPass(prune="p", time_out=True)  # a project's first create
    assert [upkeep.due("p") for _ in range(99)] == [None] * 99
    assert upkeep.due("p") == UpkeepPass(prune="p", time_out=False)  # keep // 10 creates since
    assert upkeep.due("q") == UpkeepPass(prune="q", time_out=False)  # each project on its own
    now[0] = 0.5
    assert upkeep.due("q") is None
    now[0] = 1.0
    assert upkeep.due("q") == UpkeepPass(prune="q", time_out=True)  # a second later


def test_upkeep_follows_small_bounds_and_skips_pruning_without_any() -> None:
    now = [0.0]
    small = Upkeep(Retention(keep=3, max_age_s=0.3), interval_s=1.0, clock=lambda: now[0])
    assert small.due("p") == UpkeepPass(prune="p", time_out=True)
    assert small.due("p") == UpkeepPass(prune="p", time_out=False)  # keep < 10: every create
    now[0] = 0.15  # half the age bound: time-outs are due again too
    assert small.due("p") == UpkeepPass(prune="p", time_out=True)
    unbounded = Upkeep(Retention(keep=0, max_age_s=0), interval_s=1.0, clock=lambda: now[0])
    assert unbounded.due("p") == UpkeepPass(prune=None, time_out=True)
    assert unbounded.due("p") is None
