"""A canary value never appears in any response, log line, stream entry, or the SQLite files."""

import logging
import secrets as random
from pathlib import Path

import pytest
import redis.asyncio as redis

from tests.e2e.conftest import Stack, StartStack

pytestmark = pytest.mark.timeout(30)


def sqlite_files(db_path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in db_path.parent.glob(db_path.name + "*")}


async def exercise(stack: Stack, canary: str) -> None:
    """Everything a user can do with a value, including getting it wrong."""
    project, other = await stack.create_project("Shop"), await stack.create_project("Other")
    base = f"/api/projects/{project.id}/secrets"
    json_type = {"Content-Type": "application/json"}
    await stack.put(project, "CANARY", canary)
    await stack.put(project, "CANARY", canary + "-v2")
    await stack.put(project, "CANARY_COPY", canary)
    await stack.call("GET", base, headers=project.dashboard)
    await stack.call("GET", f"{base}/CANARY", headers=project.dashboard)
    await stack.call("GET", f"/api/engine/{project.id}/secrets", headers=project.engine)
    refused = [
        await stack.call("PUT", f"{base}/CANARY", json={"value": canary, "extra": canary}, headers=project.dashboard),
        await stack.call("PUT", f"{base}/CANARY", json={"value": canary * 3000}, headers=project.dashboard),
        await stack.call("PUT", f"{base}/CANARY", json={"value": [canary]}, headers=project.dashboard),
        await stack.call(
            "PUT", f"{base}/CANARY", data=b'{"value": "' + canary.encode(), headers={**project.dashboard, **json_type}
        ),
        await stack.call("PUT", f"{base}/CANARY", data=canary.encode(), headers=project.dashboard),
        await stack.call(
            "PUT", f"{base}/CANARY", json={"value": canary}, headers={**project.dashboard, "If-Match": "99"}
        ),
        await stack.call(
            "PUT", f"{base}/1{canary.replace('-', '_')}", json={"value": canary}, headers=project.dashboard
        ),
        await stack.call("PUT", f"{base}/CANARY", json={"value": canary}, headers=other.dashboard),
        await stack.call("PUT", f"{base}/CANARY", json={"value": canary}, headers=project.engine),
        await stack.call("PUT", f"{base}/CANARY", json={"value": canary}, headers={"Authorization": "Bearer nope"}),
        await stack.call("GET", f"/api/engine/{project.id}/secrets", headers=other.engine),
    ]
    assert [status for status, _ in refused] == [422, 422, 422, 400, 415, 412, 422, 404, 403, 401, 404]

    worker = stack.in_process_worker()
    await worker.start()
    try:
        await worker.wait_connected()
        async with worker.execution(project.id, project.engine_token) as ctx:
            assert await ctx.secrets.get("CANARY") == canary + "-v2"
            assert canary not in repr(ctx.secrets) and canary not in repr(ctx)
        await stack.delete(project, "CANARY")
    finally:
        await worker.close()


async def test_a_canary_value_never_leaks(
    start_stack: StartStack, redis_url: str, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    canary = "canary-" + random.token_hex(16)
    stack = await start_stack(redis_url)
    await exercise(stack, canary)
    needle = canary.encode()

    assert len(stack.responses) > 15
    for body in stack.responses:
        assert needle not in body

    entries = await redis_client.xrange(stack.events_stream)
    assert len(entries) >= 6
    assert needle not in repr(entries).encode()
    deltas = [key async for key in redis_client.scan_iter(match=f"{stack.prefix}:engine-delta:*")]
    assert len(deltas) >= 3, "each secret.put leaves its engine delta (ciphertext) for a minute"
    for key in deltas:
        assert needle not in (await redis_client.get(key) or b""), key

    files = sqlite_files(stack.db_path)
    assert {f"{stack.db_path.name}", f"{stack.db_path.name}-wal"} <= set(files)  # WAL mode: the log is there
    for name, data in files.items():
        assert needle not in data, name

    stack.worker.stop()
    stack.service.process.stop()
    for name, data in sqlite_files(stack.db_path).items():  # and after the WAL is checkpointed
        assert needle not in data, name
    for process in (stack.service.process, stack.worker):
        log = process.log_bytes()
        assert log, f"{process.name} logged nothing"
        assert needle not in log, process.name
    assert canary not in caplog.text
