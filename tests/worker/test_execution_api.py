"""The worker's claim and result calls against the real service: what is retried, what is skipped."""

from collections.abc import AsyncIterator

import aiohttp
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


async def test_the_consumer_acks_and_skips_an_unknown_execution(
    api: TestClient, project: Project, session: aiohttp.ClientSession, redis_client: redis.Redis
) -> None:
    ran: list[str] = []

    async def run(request: ExecutionRequest, attempt: int) -> ExecutionResult:
        ran.append(request.id)
        return ExecutionResult(status="succeeded")

    api_client = ExecutionApi(session, api_url(api), timeout_s=5.0)
    consumer = ExecutionConsumer(redis_client, "unused", "w", api_client, run)
    assert await consumer._process(unknown_request(project)) is True  # may be acked
    assert ran == []
