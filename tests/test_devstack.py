"""`backend-secrets dev` as a developer runs it: a real process, a temporary data folder.

Run twice on one data folder: first with the real Redis, then with nothing listening at REDIS_URL,
so the second run starts the embedded server and reuses the key and token the first one made. In
each run a webhook verified with a secret passes, before and after an overwrite: executions and
change events both go through that run's Redis. Also: the worker's listener (XREAD BLOCK) follows
the embedded server, a child that dies stops the stack, and configuration errors exit 2.
"""

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import re
import signal
import socket
import stat
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as redis

from contract.engine import EngineSnapshot
from contract.events import SecretPut, UnknownEvent, decode_event, encode_event
from contract.streams import FIELD_EVENT, FIELD_ORIGIN, FIELD_SEQ
from service.embedded_redis import EmbeddedRedis
from tests.support.processes import Process, clean_environ, free_port
from worker.listener import ChangeListener, listener_client
from worker.snapshots import SnapshotCache

CLI = str(Path(sys.executable).with_name("backend-secrets"))
CANARY = "canary-dev-" + os.urandom(6).hex()
SIGNING_KEYS = ["whsec_dev_" + os.urandom(8).hex() for _ in range(2)]
EVENT = json.dumps({"id": "evt_1", "type": "payment_intent.succeeded"}).encode()
STRIPE_WORKFLOW = {
    "trigger": {"type": "webhook"},
    "nodes": [
        {
            "id": "verify",
            "type": "verify_webhook",
            "config": {"scheme": "stripe", "secret": "${ secrets.SIGNING_KEY }"},
        },
        {"id": "reply", "type": "respond", "config": {"status": 200, "body": {"received": "${ input.body.type }"}}},
    ],
}
READY = "dev: ready."
UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"  # port 1: nothing listens there


def dev_process(tmp_path: Path, data_dir: Path, port: int, run: str, **env: str) -> Process:
    args = [CLI, "dev", "--data-dir", str(data_dir), "--port", str(port)]
    return Process(name=f"dev ({run})", args=args, env=clean_environ(**env), log_path=tmp_path / f"dev-{run}.log")


@contextlib.asynccontextmanager
async def running(process: Process) -> AsyncIterator[Process]:
    """Start `backend-secrets dev`, wait until it says ready, and stop it with a Ctrl-C afterwards."""
    process.start()
    try:
        await process.wait_for_log(READY, timeout_s=15)
        yield process
    finally:
        if process.running:
            code = process.stop(signal.SIGINT)
            assert code == 0, f"dev exited {code} on Ctrl-C:\n{process.tail()}"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def create_project(session: aiohttp.ClientSession, api: str, admin_token: str, name: str) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {admin_token}"}
    async with session.post(f"{api}/api/projects", json={"name": name}, headers=headers) as response:
        assert response.status == 201, await response.text()
        body: dict[str, str] = await response.json()
        return body


async def put_secret(session: aiohttp.ClientSession, api: str, project: dict[str, str], name: str) -> dict[str, int]:
    url = f"{api}/api/projects/{project['id']}/secrets/{name}"
    headers = {"Authorization": f"Bearer {project['dashboard_token']}"}
    async with session.put(url, json={"value": CANARY}, headers=headers) as response:
        assert response.status in (200, 201), await response.text()
        assert CANARY not in await response.text()
        meta: dict[str, int] = await response.json()
        return meta


async def check_readback(session: aiohttp.ClientSession, api: str, project: dict[str, str], name: str) -> None:
    """Listed by name and version, never with its value; the engine endpoint has ciphertext only."""
    dashboard = {"Authorization": f"Bearer {project['dashboard_token']}"}
    async with session.get(f"{api}/api/projects/{project['id']}/secrets", headers=dashboard) as response:
        assert response.status == 200
        text = await response.text()
    assert CANARY not in text
    assert name in [item["name"] for item in (await response.json())["secrets"]]
    engine = {"Authorization": f"Bearer {project['engine_token']}"}
    async with session.get(f"{api}/api/engine/{project['id']}/secrets", headers=engine) as response:
        assert response.status == 200
        text = await response.text()
        snapshot = await response.json()
    assert CANARY not in text
    (secret,) = [item for item in snapshot["secrets"] if item["name"] == name]
    assert secret["ciphertext"].startswith("gAAAAA")  # a Fernet token


def stripe_signature(key: str, body: bytes) -> str:
    t = int(time.time())
    return f"t={t},v1={hmac.new(key.encode(), f'{t}.'.encode() + body, hashlib.sha256).hexdigest()}"


async def check_the_engine_follows_a_secret(session: aiohttp.ClientSession, api: str, project: dict[str, str]) -> None:
    """A webhook verified with a secret: executions and change events both pass through this stack's Redis."""
    dashboard = {"Authorization": f"Bearer {project['dashboard_token']}"}
    base = f"{api}/api/projects/{project['id']}"
    async with session.put(f"{base}/workflows/stripe", json=STRIPE_WORKFLOW, headers=dashboard) as response:
        assert response.status in (200, 201), await response.text()
    for key in SIGNING_KEYS:
        async with session.put(f"{base}/secrets/SIGNING_KEY", json={"value": key}, headers=dashboard) as response:
            assert response.status in (200, 201), await response.text()
        headers = {"Content-Type": "application/json", "Stripe-Signature": stripe_signature(key, EVENT)}
        async with session.post(f"{api}/hooks/{project['id']}/stripe", data=EVENT, headers=headers) as response:
            assert response.status == 200, await response.text()
            assert await response.json() == {"received": "payment_intent.succeeded"}


def assert_no_secret_in(text: str) -> None:
    for value in (CANARY, *SIGNING_KEYS):
        assert value not in text


async def stream_events(url: str, stream: str) -> list[SecretPut | UnknownEvent]:
    client = redis.Redis.from_url(url)
    try:
        entries = await client.xrange(stream)
    finally:
        await client.aclose()
    return [decode_event(fields[FIELD_EVENT]) for _id, fields in entries]


async def test_dev_runs_the_stack_on_redis_then_on_the_embedded_server(
    tmp_path: Path, redis_url: str, prefix: str, redis_client: redis.Redis
) -> None:
    data = tmp_path / "data"
    started = time.monotonic()

    # First run: the real Redis. A key and a token are generated, the token printed once.
    port = free_port()
    first = dev_process(tmp_path, data, port, "redis", REDIS_URL=redis_url, BACKEND_SECRETS_STREAM_PREFIX=prefix)
    async with running(first), aiohttp.ClientSession() as session:
        api = f"http://127.0.0.1:{port}"
        admin_token = (data / "admin.token").read_text().strip()
        log = first.log_text()
        assert "generated a master key" in log and "BACKEND_SECRETS_MASTER_KEYS is not set" in log
        assert log.count(admin_token) == 1, "the admin token is printed exactly once"
        assert "embedded" not in log
        project = await create_project(session, api, admin_token, "Shop")
        assert (await put_secret(session, api, project, "STRIPE_WEBHOOK_SIGNING_KEY"))["version"] == 1
        await check_readback(session, api, project, "STRIPE_WEBHOOK_SIGNING_KEY")
        events = await stream_events(redis_url, f"{prefix}:events")
        assert any(isinstance(e, SecretPut) and e.project == project["id"] for e in events), events
        await check_the_engine_follows_a_secret(session, api, project)
    assert mode(data / "master.key") == 0o600
    assert mode(data / "admin.token") == 0o600
    assert_no_secret_in(first.log_text())

    # Second run: nothing answers at REDIS_URL. The embedded server starts; key and token are reused.
    port = free_port()
    second = dev_process(tmp_path, data, port, "embedded", REDIS_URL=UNREACHABLE_REDIS)
    async with running(second), aiohttp.ClientSession() as session:
        api = f"http://127.0.0.1:{port}"
        log = second.log_text()
        assert "started an embedded Redis-compatible server" in log
        assert admin_token not in log and "admin token: in" in log
        assert "generated a master key" not in log
        # The first run's project still opens: the same master key unwraps its key.
        assert (await put_secret(session, api, project, "STRIPE_WEBHOOK_SIGNING_KEY"))["version"] == 2
        fresh = await create_project(session, api, admin_token, "Billing")
        assert (await put_secret(session, api, fresh, "INTERNAL_API_TOKEN"))["version"] == 1
        await check_readback(session, api, fresh, "INTERNAL_API_TOKEN")
        match = re.search(r"server \(.*\) at (redis://127\.0\.0\.1:\d+/0)", log)
        assert match is not None, log
        events = await stream_events(match.group(1), "backend-secrets:events")
        assert any(isinstance(e, SecretPut) and e.project == fresh["id"] for e in events), events
        await check_the_engine_follows_a_secret(session, api, fresh)
    assert mode(data / "master.key") == 0o600
    assert_no_secret_in(second.log_text())
    assert time.monotonic() - started < 30


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def children_of(pid: int) -> dict[int, str]:
    """The child processes of `pid` and their command lines, from /proc."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    return found


async def test_a_child_that_dies_stops_the_stack(tmp_path: Path) -> None:
    process = dev_process(tmp_path, tmp_path / "data", free_port(), "child-dies", REDIS_URL=UNREACHABLE_REDIS)
    process.start()
    try:
        await process.wait_for_log(READY, timeout_s=15)
        assert process.popen is not None
        children = children_of(process.popen.pid)
        (worker,) = [pid for pid, command in children.items() if command.endswith("-m worker ")]
        os.kill(worker, signal.SIGKILL)
        assert process.popen.wait(15) == 1
        assert "the worker exited with code -9; stopping the rest" in process.log_text()
        assert not [pid for pid in children if alive(pid)], "the API was stopped too"
    finally:
        process.stop()


async def test_configuration_errors_exit_2_before_anything_starts(tmp_path: Path) -> None:
    data = tmp_path / "data"
    bad_key = dev_process(tmp_path, data, free_port(), "bad-key", BACKEND_SECRETS_MASTER_KEYS="not-a-key")
    bad_key.start()
    assert bad_key.popen is not None and bad_key.popen.wait(15) == 2
    assert "configuration error" in bad_key.log_text() and "is not a Fernet key" in bad_key.log_text()
    assert not (data / "master.key").exists()

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = dev_process(tmp_path, tmp_path / "unused", taken.getsockname()[1], "busy-port")
        busy.start()
        assert busy.popen is not None and busy.popen.wait(15) == 2
    assert "cannot listen on 127.0.0.1" in busy.log_text()
    assert not (tmp_path / "unused").exists(), "nothing is created when the port is taken"


async def cancel(task: asyncio.Task[None]) -> None:
    """Cancel until it is done: Python 3.11's wait_for (inside redis-py's send) can swallow a cancel."""
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=0.5)


async def no_fetch(project: str, token: str) -> EngineSnapshot:
    raise AssertionError("the listener never fetches")


@pytest.mark.parametrize("pause_s", [0.0, 0.35])
async def test_the_worker_listener_follows_the_embedded_server(pause_s: float) -> None:
    """XREAD BLOCK against fakeredis: events arrive at once, also after empty blocked reads time out."""
    block_ms, stream = 200, "dev-test:events"
    with EmbeddedRedis() as server:
        client = listener_client(server.url, block_ms)
        listener = ChangeListener(
            client,
            stream,
            SnapshotCache(no_fetch, max_projects=10, miss_refresh_interval_s=1.0),
            block_ms=block_ms,
        )
        seen: asyncio.Queue[object] = asyncio.Queue()
        listener.on_event = seen.put_nowait
        task = asyncio.create_task(listener.run())
        publisher = redis.Redis.from_url(server.url)
        try:
            await asyncio.wait_for(listener.connected.wait(), 5)
            for seq in range(1, 6):
                await asyncio.sleep(pause_s)  # > block_ms: the read has timed out empty and blocks anew
                event = SecretPut(seq=seq, project="shop", revision=seq, name="KEY", version=seq)
                fields = {FIELD_SEQ: str(seq), FIELD_ORIGIN: b"dev-test", FIELD_EVENT: encode_event(event)}
                sent = time.monotonic()
                await publisher.xadd(stream, fields, maxlen=1000, approximate=True)
                assert await asyncio.wait_for(seen.get(), 2) == event
                assert time.monotonic() - sent < 0.5
            assert listener.events_seen == 5 and listener.connected.is_set()
        finally:
            await cancel(task)
            await publisher.aclose()
            await client.aclose()
