"""One canary value through every private store and a real execution, then looked for everywhere: never found.

The value is saved as a Backend Secret and as the secret field of two typed credentials (Frontend
vars are public by design, so they are not a place to look for it), overwritten, used by workflows
that a worker process runs end to end (an `http_request` with the secret in a header, a query and a
JSON body, others with `credential:`), against a local echo server that answers everything it
received (so the value comes back into the engine in each of its forms), run through the webhook
and the dashboard's run route, refused in all the ways a user gets it wrong, and finally deleted.

Then the value, its base64 (standard and URL-safe, at each of the three alignments it can take
inside a longer base64 text), its URL-encoded and JSON-escaped forms are searched for in: every
response body the test received, the service's and the worker's logs, every file of the service's
data folder (the SQLite db, -wal, -shm, the keystore), every Redis key under the test's prefix by
type (streams entry by entry, with their consumer groups and pending entries; the engine deltas'
strings), every execution record the API shows, and the /metrics of the service and of the worker.
Zero occurrences. The echo server is the only place it may reach, and it must have: that is the
proof the value was used.
"""

import asyncio
import base64
import json
import re
import secrets as random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, quote_plus

import aiohttp
import pytest
import redis.asyncio as redis
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.fernet import Fernet

from tests.support.processes import Process, ServiceProcess, free_port, service_process, worker_process

pytestmark = pytest.mark.timeout(120)

# Characters that URL-encoding, JSON-escaping and base64 each change, within what a header and an
# http_bearer credential (printable ASCII) accept.
CANARY: Final = f"cnry{random.token_hex(12)}/+=?&%:~"
BASIC_USER: Final = "canary-usr"  # "canary-usr:" is 11 bytes: the password's base64 is unaligned


def needles(value: str) -> dict[str, bytes]:
    """Every form of `value` to look for, by name."""
    raw = value.encode()
    found = {
        "plain": raw,
        "json-escaped": json.dumps(value)[1:-1].encode(),
        "url-encoded": quote(value, safe="").encode(),
        "url-encoded (path)": quote(value).encode(),
        "url-encoded (form)": quote_plus(value).encode(),
    }
    for offset in range(3):  # inside a longer base64 text the value starts at one of three alignments
        for name, encode in (("base64", base64.b64encode), ("base64url", base64.urlsafe_b64encode)):
            text = encode(b"\0" * offset + raw).rstrip(b"=")
            skip = 0 if offset == 0 else 4  # the first quantum mixes in what came before
            found[f"{name}@{offset}"] = text[skip : len(text) - 4]  # the last one depends on what follows
    return found


NEEDLES: Final = needles(CANARY)


def occurrences(data: bytes) -> list[str]:
    return [name for name, needle in NEEDLES.items() if needle in data]


@dataclass
class Stack:
    service: ServiceProcess
    worker: Process
    worker_metrics: str
    folder: Path
    http: aiohttp.ClientSession
    project: str = ""
    dashboard: dict[str, str] = field(default_factory=dict)
    engine: dict[str, str] = field(default_factory=dict)
    responses: list[tuple[str, bytes]] = field(default_factory=list)

    async def call(self, method: str, url: str, **kwargs: Any) -> tuple[int, Any]:
        """A request whose answer is kept, to be searched; JSON is decoded when it is JSON."""
        if url.startswith("/"):
            url = self.service.url + url
        async with self.http.request(method, url, **kwargs) as response:
            body = await response.read()
            headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items()).encode()
        self.responses.append((f"{method} {url} -> {response.status}", headers + b"\n\n" + body))
        try:
            return response.status, json.loads(body) if body else None
        except ValueError:
            return response.status, body.decode(errors="replace")

    async def expect(self, status: int, method: str, path: str, **kwargs: Any) -> Any:
        got, body = await self.call(method, path, **kwargs)
        assert got == status, (method, path, got, body)
        return body


@pytest.fixture
async def echo() -> AsyncIterator[tuple[TestServer, list[dict[str, Any]]]]:
    """Answers every request with all of it: method, path and query, headers, body."""
    received: list[dict[str, Any]] = []

    async def handler(request: web.Request) -> web.Response:
        seen = {
            "method": request.method,
            "path_qs": request.path_qs,
            "query": dict(request.query),
            "headers": dict(request.headers),
            "body": (await request.read()).decode(errors="replace"),
        }
        received.append(seen)
        return web.json_response(seen)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server, received
    await server.close()


@pytest.fixture
async def stack(tmp_path: Path, redis_url: str, prefix: str, redis_client: redis.Redis) -> AsyncIterator[Stack]:
    admin = "canary-admin-" + random.token_hex(12)
    service = service_process(
        tmp_path / "service",
        redis_url=redis_url,
        prefix=prefix,
        master_key=Fernet.generate_key().decode(),
        admin_token=admin,
    )
    (tmp_path / "service").mkdir()
    (tmp_path / "worker").mkdir()
    metrics_port = free_port()
    worker = worker_process(
        tmp_path / "worker",
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
            stack = Stack(service, worker, f"http://127.0.0.1:{metrics_port}/metrics", tmp_path / "service", http)
            created = await stack.expect(
                201, "POST", "/api/projects", json={"name": "Canary"}, headers={"Authorization": f"Bearer {admin}"}
            )
            stack.project = created["id"]
            stack.dashboard = {"Authorization": f"Bearer {created['dashboard_token']}"}
            stack.engine = {"Authorization": f"Bearer {created['engine_token']}"}
            yield stack
    finally:
        worker.stop()
        service.process.stop()


def _workflow(echo_url: str, trigger: str = "webhook") -> dict[str, Any]:
    call = {"method": "POST", "url": echo_url}
    secret = "${ secrets.CANARY }"
    return {
        "trigger": {"type": trigger},
        "nodes": [
            {
                "id": "with-secret",
                "type": "http_request",
                "config": {
                    **call,
                    "headers": {"X-Api-Key": secret, "Authorization": f"Bearer {secret}"},
                    "query": {"key": "${ ctx.secrets.CANARY }"},
                    "json": {"key": secret, "nested": [f"k={secret}"]},
                },
            },
            {"id": "with-bearer", "type": "http_request", "config": {**call, "credential": "CANARY_BEARER"}},
            {"id": "with-basic", "type": "http_request", "config": {**call, "credential": "CANARY_BASIC", "json": {}}},
        ],
    }


async def write_everywhere(stack: Stack) -> None:
    """The canary through each private store, twice (created, then overwritten), and every refusal."""
    base = f"/api/projects/{stack.project}"
    bearer = {"type": "http_bearer", "fields": {"token": CANARY}}
    basic = {"type": "http_basic", "fields": {"username": BASIC_USER, "password": CANARY}}
    for status in (201, 200):
        await stack.expect(status, "PUT", f"{base}/secrets/CANARY", json={"value": CANARY}, headers=stack.dashboard)
        await stack.expect(status, "PUT", f"{base}/credentials/CANARY_BEARER", json=bearer, headers=stack.dashboard)
        await stack.expect(status, "PUT", f"{base}/credentials/CANARY_BASIC", json=basic, headers=stack.dashboard)
    json_type = {**stack.dashboard, "Content-Type": "application/json"}
    if_match = {**stack.dashboard, "If-Match": "9"}
    wrong_type = {"type": "stripe", "fields": {"secret_key": CANARY}}
    refused = [
        ("PUT", f"{base}/secrets/CANARY", {"json": {"value": CANARY, "extra": CANARY}}, 422),
        ("PUT", f"{base}/secrets/CANARY", {"json": {"value": [CANARY]}}, 422),
        ("PUT", f"{base}/secrets/CANARY", {"data": b'{"value": "' + CANARY.encode(), "headers": json_type}, 400),
        ("PUT", f"{base}/secrets/CANARY", {"data": CANARY.encode()}, 415),
        ("PUT", f"{base}/secrets/CANARY", {"json": {"value": CANARY}, "headers": if_match}, 412),
        ("PUT", f"{base}/secrets/{quote(CANARY, safe='')}", {"json": {"value": CANARY}}, 422),
        ("PUT", f"{base}/secrets/CANARY", {"json": {"value": CANARY}, "headers": stack.engine}, 403),
        ("PUT", f"{base}/credentials/CANARY_BEARER", {"json": wrong_type}, 422),
        ("PUT", f"{base}/credentials/CANARY_BEARER", {"json": {"type": CANARY, "fields": {"token": CANARY}}}, 422),
        ("PUT", f"{base}/credentials/CANARY_BEARER", {"json": {"type": "http_bearer", "fields": {"x": CANARY}}}, 422),
        ("PUT", f"{base}/frontend-vars/LOOKS_PRIVATE", {"json": {"value": CANARY}}, 422),  # the guardrail
        ("PUT", f"/api/projects/{quote(CANARY, safe='')}/secrets/X", {"json": {"value": CANARY}}, 404),
        ("POST", "/api/session", {"json": {"token": CANARY}, "headers": {}}, 401),
        ("GET", f"{base}/secrets", {"headers": {"Authorization": f"Bearer {CANARY}"}}, 401),
    ]
    for method, path, kwargs, status in refused:
        await stack.expect(status, method, path, **{"headers": stack.dashboard, **kwargs})


async def run_everything(stack: Stack, echo_url: str) -> None:
    base = f"/api/projects/{stack.project}"
    await stack.expect(201, "PUT", f"{base}/workflows/canary", json=_workflow(echo_url), headers=stack.dashboard)
    manual = _workflow(echo_url, trigger="manual")
    await stack.expect(201, "PUT", f"{base}/workflows/canary-run", json=manual, headers=stack.dashboard)
    code = {"nodes": [{"id": "js", "type": "javascript_code", "config": {"code": "return ctx.secrets.CANARY;"}}]}
    await stack.expect(422, "PUT", f"{base}/workflows/sneaky", json=code, headers=stack.dashboard)

    hook = await stack.expect(200, "POST", f"/hooks/{stack.project}/canary", json={"hello": "world"})
    assert hook["status"] == 200, hook  # the last node's output: the echo's answer, masked
    record = await stack.expect(201, "POST", f"{base}/workflows/canary-run/executions", headers=stack.dashboard)
    assert record["status"] == "succeeded", record

    await stack.expect(200, "GET", f"/api/engine/{stack.project}/secrets", headers=stack.engine)
    for path in ("secrets", "secrets/CANARY", "credentials", "credentials/CANARY_BEARER", "audit"):
        await stack.expect(200, "GET", f"{base}/{path}", headers=stack.dashboard)

    # Deleted: the secret stops resolving (an error path that names the secret, never its value).
    await stack.expect(204, "DELETE", f"{base}/secrets/CANARY", headers=stack.dashboard)
    status, failed = await stack.call("POST", f"/hooks/{stack.project}/canary", json={})
    assert status >= 400 and failed["error"]["code"] == "secret_not_found", failed
    await stack.expect(204, "DELETE", f"{base}/credentials/CANARY_BEARER", headers=stack.dashboard)
    await stack.expect(204, "DELETE", f"{base}/credentials/CANARY_BASIC", headers=stack.dashboard)


async def execution_records(stack: Stack) -> list[str]:
    base = f"/api/projects/{stack.project}/executions"
    page = await stack.expect(200, "GET", f"{base}?limit=200", headers=stack.dashboard)
    ids = [summary["id"] for summary in page["executions"]]
    for execution_id in ids:
        await stack.expect(200, "GET", f"{base}/{execution_id}", headers=stack.dashboard)
    return ids


async def redis_dump(client: redis.Redis, prefix: str) -> dict[str, bytes]:
    """Everything under the prefix, read by type: each key's whole content as bytes."""
    dumped: dict[str, bytes] = {}
    async for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        kind = (await client.type(key)).decode()
        name = f"{key.decode()} ({kind})"
        content: Any
        if kind == "string":
            content = await client.get(key)
        elif kind == "hash":
            content = await client.hgetall(key)
        elif kind == "list":
            content = await client.lrange(key, 0, -1)
        elif kind == "set":
            content = await client.smembers(key)
        elif kind == "zset":
            content = await client.zrange(key, 0, -1, withscores=True)
        elif kind == "stream":
            groups = await client.xinfo_groups(key)
            pending = [await client.xpending_range(key, g["name"], "-", "+", 1000) for g in groups]
            consumers = [await client.xinfo_consumers(key, g["name"]) for g in groups]
            entries = await client.xrange(key)
            content = {"entries": entries, "groups": groups, "pending": pending, "consumers": consumers}
        else:
            raise AssertionError(f"{name}: a Redis type this test does not read yet")
        dumped[name] = repr(content).encode() + b"\n" + _raw_values(content)
    return dumped


def _raw_values(content: Any) -> bytes:
    """The bytes inside a Redis reply, unescaped (repr() would hide non-ASCII bytes behind escapes)."""
    if isinstance(content, bytes):
        return content + b"\n"
    if isinstance(content, str):
        return content.encode() + b"\n"
    if isinstance(content, dict):
        return b"".join(_raw_values(k) + _raw_values(v) for k, v in content.items())
    if isinstance(content, list | tuple | set):
        return b"".join(_raw_values(item) for item in content)
    return b""


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


async def test_a_canary_in_every_private_store_is_never_written_down(
    stack: Stack, echo: tuple[TestServer, list[dict[str, Any]]], redis_client: redis.Redis, prefix: str
) -> None:
    server, received = echo
    await write_everywhere(stack)
    await run_everything(stack, str(server.make_url("/echo")))

    # It reached the third party, in each way the workflows send it: the proof it was used.
    basic = "Basic " + base64.b64encode(f"{BASIC_USER}:{CANARY}".encode()).decode()
    sent = [(r["headers"].get("X-Api-Key"), r["headers"].get("Authorization")) for r in received]
    assert (CANARY, f"Bearer {CANARY}") in sent, "the secret did not reach the echo server"
    assert (None, f"Bearer {CANARY}") in sent and (None, basic) in sent, "a credential did not reach the echo server"
    assert any(r["query"].get("key") == CANARY for r in received), "the secret did not go in the query"
    assert any(CANARY in r["body"] for r in received), "the secret did not go in the JSON body"

    records = await execution_records(stack)
    assert len(records) >= 3
    await stack.expect(200, "GET", "/metrics")
    await stack.expect(200, "GET", stack.worker_metrics)
    await asyncio.sleep(0.2)  # let the last log lines and stream entries land

    places: dict[str, bytes] = {f"response {i}: {label}": body for i, (label, body) in enumerate(stack.responses)}
    places |= {f"redis {name}": data for name, data in (await redis_dump(redis_client, prefix)).items()}
    places |= {f"file {name}": data for name, data in files_under(stack.folder).items()}
    places["worker log"] = stack.worker.log_bytes()
    assert any(name.startswith("redis ") and "executions" in name for name in places), sorted(places)
    assert any(name.startswith("redis ") and ":engine-delta:" in name for name in places), sorted(places)
    assert any(name.endswith(".db-wal") for name in places), "no WAL file: not in WAL mode?"
    assert any(name.endswith(".db-shm") for name in places), "no shared-memory file: not in WAL mode?"
    assert len(stack.responses) >= 40

    print(f"searched {len(places)} places, {sum(map(len, places.values()))} bytes, for {len(NEEDLES)} forms")
    leaks = {name: found for name, data in places.items() if (found := occurrences(data))}
    assert not leaks, f"the canary was found: {leaks}"

    # Once stopped (the WAL checkpointed into the db), the files and the logs once more.
    stack.worker.stop()
    stack.service.process.stop()
    stopped = files_under(stack.folder) | {"worker log": stack.worker.log_bytes()}
    assert any(b"serving on" in data for data in stopped.values()), "the service log is not where it was expected"
    leaks = {name: found for name, data in stopped.items() if (found := occurrences(data))}
    assert not leaks, f"the canary was found once stopped: {leaks}"


def test_the_needles_find_each_form() -> None:
    """The search itself: each form of the value is found where it was put, and not in unrelated text."""
    samples = {
        "plain": f"x{CANARY}y",
        "url-encoded": "q=" + quote(CANARY, safe=""),
        "json-escaped": json.dumps({"k": CANARY}),
        "base64@0": base64.b64encode(CANARY.encode()).decode(),
        "base64@2": base64.b64encode(f"{BASIC_USER}:{CANARY}".encode()).decode(),
        "base64url@1": base64.urlsafe_b64encode(b"k" + CANARY.encode() + b"tail").decode(),
    }
    for name, text in samples.items():
        assert occurrences(text.encode()), name
    assert not occurrences(("cnry" + random.token_hex(12) + "/+=?&%:~").encode())
    assert all(len(needle) >= 24 for needle in NEEDLES.values()), {k: len(v) for k, v in NEEDLES.items()}
    assert re.fullmatch(r"[\x21-\x7e]+", CANARY)
