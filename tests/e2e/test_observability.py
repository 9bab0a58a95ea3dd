"""Observability of the real programs: `python -m service` and `python -m worker` log JSON lines by
default (never a value), and the worker serves /metrics and /healthz on its loopback port."""

import hashlib
import hmac
import json
import secrets as random
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as redis
from cryptography.fernet import Fernet
from prometheus_client.parser import text_string_to_metric_families

from tests.support.processes import Process, free_port, service_process, worker_process

pytestmark = pytest.mark.timeout(60)

FIRST_VALUE = "whsec_obs_first_" + random.token_hex(12)
SECOND_VALUE = "whsec_obs_second_" + random.token_hex(12)
EVENT = b'{"type": "ping"}'
WORKFLOW = {
    "trigger": {"type": "webhook"},
    "nodes": [
        {"id": "verify", "type": "verify_webhook", "config": {"scheme": "stripe", "secret": "${ secrets.SIGNING }"}},
        {"id": "reply", "type": "respond", "config": {"status": 200, "body": {"ok": True}}},
    ],
}


def _signature(key: str) -> str:
    t = int(time.time())
    return f"t={t},v1={hmac.new(key.encode(), f'{t}.'.encode() + EVENT, hashlib.sha256).hexdigest()}"


def _json_lines(process: Process) -> list[dict[str, Any]]:
    raw = process.log_bytes()
    assert FIRST_VALUE.encode() not in raw and SECOND_VALUE.encode() not in raw, f"a value in the {process.name} log"
    lines = raw.decode().splitlines()
    assert lines, f"{process.name} logged nothing"
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"{process.name} wrote a line that is not JSON: {line!r}") from None
    return parsed


async def _samples(http: aiohttp.ClientSession, url: str) -> dict[str, float]:
    async with http.get(url) as response:
        assert response.status == 200
        text = await response.text()
    assert FIRST_VALUE not in text and SECOND_VALUE not in text
    return {
        sample.name + "".join(f"|{v}" for k, v in sorted(sample.labels.items()) if k != "le"): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


class Api:
    def __init__(self, http: aiohttp.ClientSession, url: str, token: str) -> None:
        self.http, self.url, self.headers = http, url, {"Authorization": f"Bearer {token}"}

    async def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        async with self.http.request(method, self.url + path, headers=self.headers, **kwargs) as response:
            return response.status, await response.json() if response.content_type == "application/json" else None


async def test_both_programs_log_json_without_values_and_the_worker_serves_metrics(
    tmp_path: Path, redis_url: str, prefix: str, redis_client: redis.Redis
) -> None:
    admin = "admin-" + random.token_hex(8)
    service = service_process(
        tmp_path, redis_url=redis_url, prefix=prefix, master_key=Fernet.generate_key().decode(), admin_token=admin
    )
    metrics_port = free_port()
    worker = worker_process(
        tmp_path,
        redis_url=redis_url,
        prefix=prefix,
        api_url=service.url,
        BACKEND_SECRETS_WORKER_METRICS_PORT=str(metrics_port),
    )
    service.process.start()
    try:
        await service.wait_healthy()
        worker.start()
        await worker.wait_for_log("following")
        async with aiohttp.ClientSession() as http:
            await _drive(http, service.url, admin)
            worker_metrics = await _samples(http, f"http://127.0.0.1:{metrics_port}/metrics")
            service_metrics = await _samples(http, f"{service.url}/metrics")
            async with http.get(f"http://127.0.0.1:{metrics_port}/healthz") as response:
                assert response.status == 200
    finally:
        worker.stop()
        service.process.stop()

    assert worker_metrics["backend_secrets_worker_executions_total|succeeded"] == 1
    assert worker_metrics["backend_secrets_worker_propagation_lag_seconds_count"] >= 3
    assert worker_metrics["backend_secrets_worker_cache_misses_total"] >= 1
    assert service_metrics["backend_secrets_http_requests_total|POST|/hooks/{project}/{workflow}|200"] == 1
    service_lines, worker_lines = _json_lines(service.process), _json_lines(worker)
    assert any(line["logger"] == "service.access" and line.get("request_id") for line in service_lines)
    assert any("following" in line["message"] for line in worker_lines)
    (done,) = [line for line in worker_lines if line["logger"] == "worker.executions"]
    assert done["status"] == "succeeded" and done["execution_id"].startswith("ex_")


async def _drive(http: aiohttp.ClientSession, url: str, admin: str) -> None:
    status, created = await Api(http, url, admin).call("POST", "/api/projects", json={"name": "Shop"})
    assert status == 201
    api = Api(http, url, created["dashboard_token"])
    base = f"/api/projects/{created['id']}"
    assert (await api.call("PUT", f"{base}/secrets/SIGNING", json={"value": FIRST_VALUE}))[0] == 201
    assert (await api.call("PUT", f"{base}/secrets/SIGNING", json={"value": SECOND_VALUE}))[0] == 200
    assert (await api.call("PUT", f"{base}/workflows/hook", json=WORKFLOW))[0] == 201
    headers = {"Stripe-Signature": _signature(SECOND_VALUE), "Content-Type": "application/json"}
    async with http.post(f"{url}/hooks/{created['id']}/hook", data=EVENT, headers=headers) as response:
        assert response.status == 200, await response.text()
