"""The worker's metrics (propagation lag, cache, executions) and its loopback /metrics + /healthz server."""

import asyncio
import logging
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
import redis.asyncio as redis
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from contract.executions import ExecutionInput, ExecutionRequest, ExecutionResult
from tests.conftest import Project
from tests.support.processes import free_port
from tests.support.worker import Seen
from tests.worker.conftest import api_url, put_secret
from worker.metrics import WorkerMetrics, metrics_server
from worker.runtime import Worker
from worker.settings import WorkerSettings

pytestmark = pytest.mark.timeout(20)

VALUE = "metrics-worker-canary-value-77e1"


class Idle:
    """A worker that has not started: no cache, no listener."""

    cache = None
    listener = None


@pytest.fixture
async def worker(api: TestClient, redis_url: str, prefix: str, redis_client: redis.Redis) -> AsyncIterator[Worker]:
    settings = WorkerSettings(redis_url=redis_url, api_url=api_url(api), stream_prefix=prefix, listen_block_ms=200)
    worker = Worker(settings)
    await worker.start()
    await worker.wait_connected()
    yield worker
    await worker.close()


def _samples(metrics: WorkerMetrics) -> dict[str, float]:
    text = metrics.render().decode()
    assert VALUE not in text
    return {
        sample.name + "".join(f"|{v}" for v in sample.labels.values()): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.labels or "le" not in sample.labels
    }


async def test_lag_and_cache_counters(api: TestClient, project: Project, worker: Worker) -> None:
    seen = Seen(worker)
    revision = await put_secret(api, project, "STRIPE_KEY", VALUE)
    await seen.wait_for(project.id, revision)
    ctx = worker.execution(project.id, project.engine_token)
    assert await ctx.secrets.get("STRIPE_KEY") == VALUE
    ctx.secrets.close()
    again = worker.execution(project.id, project.engine_token)
    assert await again.secrets.get("STRIPE_KEY") == VALUE
    again.secrets.close()
    samples = _samples(worker.metrics)
    assert samples["backend_secrets_worker_propagation_lag_seconds_count"] >= 1
    assert 0 <= samples["backend_secrets_worker_propagation_lag_seconds_sum"] < 5
    assert samples["backend_secrets_worker_events_seen_total"] >= 1
    assert samples["backend_secrets_worker_cache_misses_total"] == 1
    assert samples["backend_secrets_worker_cache_hits_total"] == 1
    assert samples["backend_secrets_worker_cache_projects"] == 1
    assert samples["backend_secrets_worker_events_stream_connected"] == 1
    assert samples["backend_secrets_worker_cache_drops_total"] >= 1  # the first connect drops (nothing)


async def test_executions_are_counted_by_status() -> None:
    metrics = WorkerMetrics(Idle())

    async def succeed(request: ExecutionRequest, attempt: int) -> ExecutionResult:
        return ExecutionResult(status="succeeded")

    async def fail(request: ExecutionRequest, attempt: int) -> ExecutionResult:
        return ExecutionResult(status="failed")

    async def crash(request: ExecutionRequest, attempt: int) -> ExecutionResult:
        raise RuntimeError("boom")

    request = ExecutionRequest(
        id="e1",
        project="p",
        workflow="w",
        workflow_version=1,
        definition={},
        input=ExecutionInput(),
        grant="g",
        deadline=0,
    )
    await metrics.timed(succeed)(request, 1)
    await metrics.timed(succeed)(request, 1)
    await metrics.timed(fail)(request, 1)
    with pytest.raises(RuntimeError):
        await metrics.timed(crash)(request, 1)
    samples = _samples(metrics)
    assert samples["backend_secrets_worker_executions_total|succeeded"] == 2
    assert samples["backend_secrets_worker_executions_total|failed"] == 1
    assert samples["backend_secrets_worker_executions_total|error"] == 1
    assert samples["backend_secrets_worker_execution_duration_seconds_count|succeeded"] == 2
    assert samples["backend_secrets_worker_cache_hits_total"] == 0  # not started: zeros, no error


def test_each_registry_counts_its_own_executions_by_status() -> None:
    first, second = WorkerMetrics(Idle()), WorkerMetrics(Idle())
    for status in ("succeeded", "failed", "succeeded"):
        first.observe_execution(status, 0.25)
    second.observe_execution("succeeded", 0.5)
    one, two = _samples(first), _samples(second)
    assert (
        one["backend_secrets_worker_executions_total|succeeded"],
        one["backend_secrets_worker_executions_total|failed"],
    ) == (2, 1)
    assert one["backend_secrets_worker_execution_duration_seconds_sum|succeeded"] == 0.5
    assert two["backend_secrets_worker_executions_total|succeeded"] == 1
    assert "backend_secrets_worker_executions_total|failed" not in two
    assert two["backend_secrets_worker_execution_duration_seconds_sum|succeeded"] == 0.5


async def test_the_server_answers_metrics_and_health(worker: Worker) -> None:
    port = free_port()
    async with (
        metrics_server(worker.metrics, worker, "127.0.0.1", port) as bound,
        aiohttp.ClientSession() as http,
    ):
        assert bound == port
        async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
            assert response.status == 200 and (await response.json())["status"] == "ok"
        async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
            assert response.status == 200
            assert "backend_secrets_worker_propagation_lag_seconds_bucket" in await response.text()
        assert worker.listener is not None
        worker.listener.connected.clear()  # as when the stream is lost
        async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
            assert response.status == 503 and (await response.json())["status"] == "not_following"


async def test_port_zero_disables_and_a_taken_port_only_warns(caplog: pytest.LogCaptureFixture) -> None:
    metrics = WorkerMetrics(Idle())
    async with metrics_server(metrics, Idle(), "127.0.0.1", 0) as bound:
        assert bound is None
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with caplog.at_level(logging.WARNING, logger="worker.metrics"):
            async with metrics_server(metrics, Idle(), "127.0.0.1", port) as bound:
                assert bound is None
        assert "metrics server off" in caplog.text


def test_settings_read_the_port() -> None:
    assert WorkerSettings.from_env({}).metrics_port == 9091
    settings = WorkerSettings.from_env({"BACKEND_SECRETS_WORKER_METRICS_PORT": "0"})
    assert settings.metrics_port == 0 and settings.metrics_host == "127.0.0.1"


async def test_two_workers_do_not_share_a_registry(redis_url: str, prefix: str) -> None:
    first = Worker(WorkerSettings(redis_url=redis_url, stream_prefix=prefix))
    second = Worker(WorkerSettings(redis_url=redis_url, stream_prefix=prefix))
    first.metrics.propagation_lag.observe(0.01)
    assert _samples(first.metrics)["backend_secrets_worker_propagation_lag_seconds_count"] == 1
    assert _samples(second.metrics)["backend_secrets_worker_propagation_lag_seconds_count"] == 0
    await asyncio.gather(first.close(), second.close())
