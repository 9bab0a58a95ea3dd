"""The worker's claim and result calls against the real service: what is retried, what is skipped."""

import time
from collections.abc import AsyncIterator

import aiohttp
import msgspec
import pytest
import redis.asyncio as redis
from aiohttp.test_utils import TestClient

from contract.executions import ExecutionInput, ExecutionRequest, ExecutionResult
from tests.conftest import Project
from tests.worker.conftest import api_url
from worker.consumer import ExecutionConsumer
from worker.engine_client import EngineApiError, ExecutionApi, ExecutionFinished, ExecutionUnknown

pytestmark = pytest.mark.timeout(15)


def unknown_request(project: Project) -> ExecutionRequest:
    """An execution the service never queued (or no longer knows): its grant means nothing there."""
    return ExecutionRequest(
        id="ex_000000000000deadbeef",
        project=project.id,
        workflow="stripe",
        workflow_version=1,
        definition={},
        input=ExecutionInput(),
        grant="bsg_never-minted",
        deadline=0.0,
    )


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_a_claim_the_service_does_not_know_is_final(
    api: TestClient, project: Project, session: aiohttp.ClientSession
) -> None:
    with pytest.raises(ExecutionUnknown, match="401 invalid_token"):
        await ExecutionApi(session, api_url(api), timeout_s=5.0).claim(unknown_request(project), "w")


async def test_a_404_that_is_not_the_services_answer_is_retried(
    api: TestClient, project: Project, session: aiohttp.ClientSession
) -> None:
    wrong_url = ExecutionApi(session, api_url(api) + "/not-the-api", timeout_s=5.0)
    with pytest.raises(EngineApiError) as raised:
        await wrong_url.claim(unknown_request(project), "w")
    assert not isinstance(raised.value, ExecutionFinished)


async def test_a_result_for_an_unknown_execution_is_retried(
    api: TestClient, project: Project, session: aiohttp.ClientSession
) -> None:
    result = ExecutionResult(status="succeeded")
    with pytest.raises(EngineApiError):  # the claim decides; a result is retried within its grace
        await ExecutionApi(session, api_url(api), timeout_s=5.0).record(unknown_request(project), result)


def consumer_of(api_client: ExecutionApi, redis_client: redis.Redis, ran: list[str]) -> ExecutionConsumer:
    async def run(request: ExecutionRequest, attempt: int) -> ExecutionResult:
        ran.append(request.id)
        return ExecutionResult(status="succeeded")

    return ExecutionConsumer(redis_client, "unused", "unused-results", "w", api_client, run)


async def test_the_consumer_skips_a_reclaimed_execution_the_service_does_not_know(
    api: TestClient, project: Project, session: aiohttp.ClientSession, redis_client: redis.Redis
) -> None:
    ran: list[str] = []
    consumer = consumer_of(ExecutionApi(session, api_url(api), timeout_s=5.0), redis_client, ran)
    assert await consumer._claim(unknown_request(project), reclaimed=True) is None  # ack, run nothing
    assert ran == []


async def test_the_consumer_skips_a_first_delivery_read_after_its_deadline(
    api: TestClient, project: Project, session: aiohttp.ClientSession, redis_client: redis.Redis
) -> None:
    consumer = consumer_of(ExecutionApi(session, api_url(api), timeout_s=5.0), redis_client, [])
    late = unknown_request(project)  # its deadline is 0: long past
    assert await consumer._claim(late, reclaimed=False) is None
    on_time = msgspec.structs.replace(late, deadline=time.time() + 30)
    assert await consumer._claim(on_time, reclaimed=False) == 1  # a first delivery is not claimed over HTTP
