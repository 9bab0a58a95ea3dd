"""The engine end to end: the service and two workers as processes on the real Redis.

A user saves STRIPE_WEBHOOK_SIGNING_KEY, points Stripe at an endpoint, and the endpoint verifies
signatures with it at once, and with the new value the moment it is overwritten.
"""

import asyncio
import hashlib
import hmac
import json
import secrets as random
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.fernet import Fernet

from tests.support.processes import Process, ServiceProcess, service_process, worker_process

pytestmark = pytest.mark.timeout(120)

SIGNING_KEY_V1 = "whsec_" + random.token_hex(16)
SIGNING_KEY_V2 = "whsec_" + random.token_hex(16)
API_TOKEN = "tok_" + random.token_hex(16)
EVENT = json.dumps({"id": "evt_1", "type": "payment_intent.succeeded"}).encode()

STRIPE_WORKFLOW = {
    "trigger": {"type": "webhook"},
    "nodes": [
        {
            "id": "verify",
            "type": "verify_webhook",
            "config": {"scheme": "stripe", "secret": "${ secrets.STRIPE_WEBHOOK_SIGNING_KEY }"},
        },
        {"id": "reply", "type": "respond", "config": {"status": 200, "body": {"received": "${ input.body.type }"}}},
    ],
}


def stripe_signature(key: str, body: bytes) -> str:
    t = int(time.time())
    return f"t={t},v1={hmac.new(key.encode(), f'{t}.'.encode() + body, hashlib.sha256).hexdigest()}"


@dataclass
class Stack:
    service: ServiceProcess
    workers: list[Process]
    http: aiohttp.ClientSession
    project: str
    dashboard: dict[str, str]

    async def put(self, path: str, body: Any) -> aiohttp.ClientResponse:
        url = f"{self.service.url}/api/projects/{self.project}/{path}"
        async with self.http.put(url, json=body, headers=self.dashboard) as response:
            assert response.status in (200, 201), await response.text()
            return response

    async def hook(self, workflow: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
        url = f"{self.service.url}/hooks/{self.project}/{workflow}"
        headers = {"Content-Type": "application/json", **headers}
        async with self.http.post(url, data=body, headers=headers) as response:
            text = await response.text()
            return response.status, json.loads(text) if response.content_type == "application/json" else text

    async def execution(self, execution_id: str) -> dict[str, Any]:
        url = f"{self.service.url}/api/projects/{self.project}/executions/{execution_id}"
        async with self.http.get(url, headers=self.dashboard) as response:
            assert response.status == 200, await response.text()
            return dict(await response.json())

    async def executions(self) -> list[dict[str, Any]]:
        url = f"{self.service.url}/api/projects/{self.project}/executions?limit=100"
        async with self.http.get(url, headers=self.dashboard) as response:
            assert response.status == 200, await response.text()
            return list((await response.json())["executions"])


def start_worker(tmp_path: Path, name: str, service: ServiceProcess, redis_url: str, prefix: str) -> Process:
    folder = tmp_path / name
    folder.mkdir()
    worker = worker_process(
        folder, redis_url=redis_url, prefix=prefix, api_url=service.url, BACKEND_SECRETS_RECLAIM_AFTER_MS="1500"
    )
    worker.start()
    return worker


@pytest.fixture
async def stack(tmp_path: Path, redis_url: str, prefix: str, redis_client: Any) -> AsyncIterator[Stack]:
    admin = "admin-" + random.token_hex(8)
    service = service_process(
        tmp_path, redis_url=redis_url, prefix=prefix, master_key=Fernet.generate_key().decode(), admin_token=admin
    )
    service.process.start()
    workers: list[Process] = []
    try:
        await service.wait_healthy()
        workers = [start_worker(tmp_path, f"w{i}", service, redis_url, prefix) for i in (1, 2)]
        for worker in workers:
            await worker.wait_for_log("following")
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{service.url}/api/projects", json={"name": "Shop"}, headers={"Authorization": f"Bearer {admin}"}
            ) as response:
                created = await response.json()
            yield Stack(
                service, workers, http, created["id"], {"Authorization": f"Bearer {created['dashboard_token']}"}
            )
    finally:
        for worker in workers:
            worker.stop()
        service.process.stop()


async def test_stripe_webhook_follows_the_signing_key(stack: Stack) -> None:
    await stack.put("secrets/STRIPE_WEBHOOK_SIGNING_KEY", {"value": SIGNING_KEY_V1})
    await stack.put("workflows/stripe", STRIPE_WORKFLOW)

    status, body = await stack.hook("stripe", EVENT, {"Stripe-Signature": stripe_signature(SIGNING_KEY_V1, EVENT)})
    assert (status, body) == (200, {"received": "payment_intent.succeeded"})

    status, body = await stack.hook("stripe", EVENT, {"Stripe-Signature": stripe_signature("whsec_wrong", EVENT)})
    assert status == 400 and body["error"]["code"] == "invalid_signature"

    await stack.put("secrets/STRIPE_WEBHOOK_SIGNING_KEY", {"value": SIGNING_KEY_V2})
    status, _ = await stack.hook("stripe", EVENT, {"Stripe-Signature": stripe_signature(SIGNING_KEY_V2, EVENT)})
    assert status == 200, "the very next webhook signed with the new key passes"
    status, _ = await stack.hook("stripe", EVENT, {"Stripe-Signature": stripe_signature(SIGNING_KEY_V1, EVENT)})
    assert status == 400, "one signed with the old key fails"

    async with stack.http.delete(
        f"{stack.service.url}/api/projects/{stack.project}/secrets/STRIPE_WEBHOOK_SIGNING_KEY", headers=stack.dashboard
    ) as response:
        assert response.status == 204
    status, body = await stack.hook("stripe", EVENT, {"Stripe-Signature": stripe_signature(SIGNING_KEY_V2, EVENT)})
    assert body["error"]["code"] == "secret_not_found" and status >= 400
    assert "STRIPE_WEBHOOK_SIGNING_KEY" in body["error"]["message"]

    logs = [stack.service.process.log_text(), *(w.log_text() for w in stack.workers)]
    for key in (SIGNING_KEY_V1, SIGNING_KEY_V2):
        assert all(key not in log for log in logs)


async def test_code_node_sees_env_and_not_secrets(stack: Stack) -> None:
    await stack.put("secrets/K", {"value": API_TOKEN})
    code = "return {region: ctx.env.REGION, ctx_has: Object.keys(ctx).sort()};"
    workflow = {
        "nodes": [{"id": "js", "type": "javascript_code", "config": {"code": code, "env_vars": {"REGION": "eu"}}}]
    }
    await stack.put("workflows/code", workflow)
    status, body = await stack.hook("code", b"{}", {})
    assert (status, body) == (200, {"region": "eu", "ctx_has": ["env", "input", "nodes"]})


@pytest.fixture
async def echo_server() -> AsyncIterator[tuple[TestServer, list[str]]]:
    seen: list[str] = []

    async def echo(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        if request.query.get("slow"):
            await asyncio.sleep(float(request.query["slow"]))
        return web.json_response({"authorization": request.headers.get("Authorization")})

    app = web.Application()
    app.router.add_post("/echo", echo)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server, seen
    await server.close()


async def test_outbound_request_carries_the_secret_and_the_record_shows_stars(
    stack: Stack, echo_server: tuple[TestServer, list[str]]
) -> None:
    server, seen = echo_server
    await stack.put("secrets/API_TOKEN", {"value": API_TOKEN})
    node = {
        "id": "call",
        "type": "http_request",
        "config": {
            "method": "POST",
            "url": str(server.make_url("/echo")),
            "headers": {"Authorization": "Bearer ${ secrets.API_TOKEN }"},
            "json": {},
        },
    }
    await stack.put("workflows/call", {"nodes": [node]})
    status, body = await stack.hook("call", b"{}", {})
    assert seen == [f"Bearer {API_TOKEN}"]
    assert status == 200 and API_TOKEN not in json.dumps(body)
    [record] = await stack.executions()
    stored = json.dumps(await stack.execution(record["id"]))
    assert API_TOKEN not in stored and "Bearer ***" in stored


async def test_two_workers_share_the_load(stack: Stack) -> None:
    await stack.put("workflows/noop", {"nodes": [{"id": "r", "type": "respond", "config": {"body": "ok"}}]})
    statuses = await asyncio.gather(*(stack.hook("noop", b"{}", {}) for _ in range(40)))
    assert all(status == 200 for status, _ in statuses)
    workers = {record.get("worker") for record in await stack.executions()}
    assert len(workers) == 2, workers


async def test_a_worker_killed_mid_execution_is_not_silent(
    stack: Stack, echo_server: tuple[TestServer, list[str]], tmp_path: Path
) -> None:
    server, seen = echo_server
    node = {
        "id": "slow",
        "type": "http_request",
        "config": {"method": "POST", "url": str(server.make_url("/echo")), "query": {"slow": "4"}, "json": {}},
    }
    await stack.put("workflows/slow", {"nodes": [node]})
    stack.workers[1].stop()  # one worker takes the execution; the other is started once it runs
    call = asyncio.create_task(stack.hook("slow", b"{}", {}))
    deadline = time.monotonic() + 10
    while not seen and time.monotonic() < deadline:  # noqa: ASYNC110 - the echo server is the signal
        await asyncio.sleep(0.02)
    assert seen, "the execution never started"
    stack.workers[0].stop(signal.SIGKILL)
    stack.workers[1] = start_worker(tmp_path, "w3", stack.service, *_redis_and_prefix(stack))
    status, body = await call
    [record] = await stack.executions()
    assert record["status"] in ("succeeded", "failed", "timed_out"), record
    assert status == 200 or body["error"]["code"], body


def _redis_and_prefix(stack: Stack) -> tuple[str, str]:
    env = stack.workers[0].env
    return env["REDIS_URL"], env["BACKEND_SECRETS_STREAM_PREFIX"]
