"""GET /metrics: Prometheus text, labelled by canonical route and status, and never a name or value."""

import asyncio
import time

import redis.asyncio as redis
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from contract.events import SecretPut, encode_event
from service.metrics import ServiceMetrics
from service.relay import OutboxRelay
from service.store.writer import OutboxEntry
from tests.conftest import Project

CANARY_VALUE = "sk_live_metrics_canary_3f9a1c"
CANARY_NAME = "METRICS_CANARY_NAME"
SECRET_ROUTE = "/api/projects/{project}/secrets/{name}"


async def _scrape(api: TestClient) -> tuple[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    response = await api.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    text = await response.text()
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    return text, samples


def _requests(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], method: str, route: str, status: str
) -> float:
    key = ("backend_secrets_http_requests_total", (("method", method), ("route", route), ("status", status)))
    return samples.get(key, 0.0)


async def _put(api: TestClient, project: Project, value: str) -> int:
    url = f"/api/projects/{project.id}/secrets/{CANARY_NAME}"
    response = await api.put(url, json={"value": value}, headers=project.dashboard)
    return response.status


async def test_requests_are_counted_by_canonical_route_and_status(api: TestClient, project: Project) -> None:
    assert await _put(api, project, CANARY_VALUE) == 201
    assert await _put(api, project, CANARY_VALUE + "-2") == 200
    assert (await api.get(f"/api/projects/{project.id}/secrets/NOPE", headers=project.dashboard)).status == 404
    assert (await api.get("/no/such/route")).status == 404
    assert (await api.patch("/healthz")).status == 405
    text, samples = await _scrape(api)
    assert _requests(samples, "PATCH", "unmatched", "405") == 1
    assert _requests(samples, "PUT", SECRET_ROUTE, "201") == 1
    assert _requests(samples, "PUT", SECRET_ROUTE, "200") == 1
    assert _requests(samples, "GET", SECRET_ROUTE, "404") == 1
    assert _requests(samples, "GET", "unmatched", "404") == 1
    assert _requests(samples, "POST", "/api/projects", "201") == 1
    latency = (
        "backend_secrets_http_request_duration_seconds_count",
        (("method", "PUT"), ("route", SECRET_ROUTE), ("status", "201")),
    )
    assert samples[latency] == 1
    assert CANARY_VALUE not in text and CANARY_NAME not in text and project.id not in text
    assert "/no/such/route" not in text


async def test_outbox_events_and_writer_batches(api: TestClient, project: Project) -> None:
    statuses = await asyncio.gather(*(_put(api, project, f"{CANARY_VALUE}-{i}") for i in range(20)))
    assert sorted(set(statuses)) == [200, 201]
    for _ in range(200):  # the relay publishes right after each commit
        _, samples = await _scrape(api)
        if samples[("backend_secrets_events_published_total", ())] >= 21:  # project.create + 20 puts
            break
        await asyncio.sleep(0.01)
    assert samples[("backend_secrets_events_published_total", ())] >= 21
    assert samples[("backend_secrets_outbox_backlog", ())] == 0
    assert samples[("backend_secrets_outbox_oldest_pending_age_seconds", ())] == 0
    assert samples[("backend_secrets_relay_connected", ())] == 1
    operations = samples[("backend_secrets_writer_batch_size_sum", ())]
    batches = samples[("backend_secrets_writer_batch_size_count", ())]
    assert operations >= 21 and 1 <= batches <= operations
    assert samples[("backend_secrets_writer_batch_duration_seconds_count", ())] == batches


async def test_the_request_id_comes_back(api: TestClient) -> None:
    made, again = await api.get("/healthz"), await api.get("/healthz")
    assert len(made.headers["X-Request-Id"]) == 16 and made.headers["X-Request-Id"] != again.headers["X-Request-Id"]
    echoed = await api.get("/healthz", headers={"X-Request-Id": "edge-4f2a:17"})
    assert echoed.headers["X-Request-Id"] == "edge-4f2a:17"
    replaced = await api.get("/healthz", headers={"X-Request-Id": "has spaces in it"})
    assert replaced.headers["X-Request-Id"] != "has spaces in it"
    error = await api.get("/no/such/route")
    assert error.status == 404 and error.headers["X-Request-Id"]


def test_outbox_backlog_and_age_while_redis_is_away() -> None:
    relay = OutboxRelay(redis.Redis(), "test:events", "origin", 1000, lambda seq: None)  # never run: no Redis call
    metrics = ServiceMetrics()
    metrics.watch_outbox(relay)
    old = SecretPut(seq=1, project="shop", revision=2, name="K", version=1, committed_at=time.time() - 5)
    new = SecretPut(seq=2, project="shop", revision=3, name="K", version=2, committed_at=time.time())
    relay.committed([OutboxEntry(1, encode_event(old)), OutboxEntry(2, encode_event(new))])
    samples = {
        sample.name: sample.value
        for family in text_string_to_metric_families(metrics.render().decode())
        for sample in family.samples
    }
    assert samples["backend_secrets_outbox_backlog"] == 2
    assert 5 <= samples["backend_secrets_outbox_oldest_pending_age_seconds"] < 10
    assert samples["backend_secrets_events_published_total"] == 0
    assert samples["backend_secrets_relay_connected"] == 0


def test_each_app_has_its_own_registry() -> None:
    first, second = ServiceMetrics(), ServiceMetrics()  # no "Duplicated timeseries" error
    first.observe_request("GET", "/healthz", "200", 0.001)
    assert b'route="/healthz"' in first.render() and b'route="/healthz"' not in second.render()
