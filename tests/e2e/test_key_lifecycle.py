"""Keys end to end, with the service and a worker as real processes on the real Redis:
- executions keep succeeding while the project key rotates underneath them;
- a signing key's overlap window: the old signature passes verify_webhook until N s, and fails after;
- a deleted project is gone for the engine too, and its engine reads are in the audit log until then.
"""

import asyncio
import hashlib
import hmac
import json
import secrets as random
import time
from typing import Any

import pytest

from tests.e2e.conftest import E2EProject, Stack, StartStack

pytestmark = pytest.mark.timeout(90)

EVENT = json.dumps({"id": "evt_1", "type": "invoice.paid"}).encode()
WORKFLOW = {
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


def signed(key: str, body: bytes = EVENT) -> dict[str, str]:
    t = int(time.time())
    digest = hmac.new(key.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return {"Stripe-Signature": f"t={t},v1={digest}", "Content-Type": "application/json"}


async def hook(stack: Stack, project: E2EProject, key: str) -> tuple[int, Any]:
    return await stack.call("POST", f"/hooks/{project.id}/stripe", data=EVENT, headers=signed(key))


async def set_up(stack: Stack, key: str) -> E2EProject:
    project = await stack.create_project()
    await stack.put(project, "SIGNING_KEY", key)
    status, body = await stack.call(
        "PUT", f"/api/projects/{project.id}/workflows/stripe", json=WORKFLOW, headers=project.dashboard
    )
    assert status == 201, body
    return project


async def test_executions_keep_succeeding_while_the_project_key_rotates(
    start_stack: StartStack, redis_url: str
) -> None:
    stack = await start_stack(redis_url)
    key = "whsec_" + random.token_hex(16)
    project = await set_up(stack, key)
    assert (await hook(stack, project, key))[0] == 200  # warm: the worker holds the snapshot
    outcomes: list[tuple[int, Any]] = []
    stop = asyncio.Event()

    async def sender() -> None:
        while not stop.is_set():
            outcomes.append(await hook(stack, project, key))

    senders = [asyncio.create_task(sender()) for _ in range(4)]
    data_keys = set()
    try:
        for _ in range(6):
            status, rotated = await stack.call(
                "POST", f"/api/projects/{project.id}/rotate-key", headers=project.dashboard
            )
            assert status == 200, rotated
            _, snapshot = await stack.call("GET", f"/api/engine/{project.id}/secrets", headers=project.engine)
            data_keys.add(snapshot["data_key"])
            await asyncio.sleep(0.15)
    finally:
        stop.set()
        await asyncio.gather(*senders)
    failed = [outcome for outcome in outcomes if outcome[0] != 200]
    assert len(outcomes) >= 20 and not failed, (len(outcomes), failed[:3])
    assert len(data_keys) == 6  # six rotations, six keys
    assert (await hook(stack, project, key))[0] == 200
    assert "data_key" not in stack.worker.log_text()


async def test_the_old_signature_passes_until_the_window_ends_and_fails_after(
    start_stack: StartStack, redis_url: str
) -> None:
    stack = await start_stack(redis_url)
    old, new = "whsec_" + random.token_hex(16), "whsec_" + random.token_hex(16)
    project = await set_up(stack, old)
    assert (await hook(stack, project, old))[0] == 200

    status, meta = await stack.call(
        "PUT",
        f"/api/projects/{project.id}/secrets/SIGNING_KEY",
        json={"value": new, "previous_valid_for_s": 3},
        headers=project.dashboard,
    )
    assert status == 200 and meta["previous_valid_until"], meta
    assert (await hook(stack, project, new))[0] == 200
    assert (await hook(stack, project, old))[0] == 200, "an in-flight delivery signed with the old key still passes"

    window_end = time.time() + 3
    await asyncio.sleep(max(0.0, window_end - time.time()) + 0.3)
    status, body = await hook(stack, project, old)
    assert status == 400 and body["error"]["code"] == "invalid_signature", body
    assert (await hook(stack, project, new))[0] == 200


async def test_a_deleted_project_is_gone_for_the_engine_and_reads_were_audited(
    start_stack: StartStack, redis_url: str
) -> None:
    stack = await start_stack(redis_url)
    key = "whsec_" + random.token_hex(16)
    project = await set_up(stack, key)
    assert (await hook(stack, project, key))[0] == 200

    status, page = await stack.call("GET", f"/api/projects/{project.id}/audit?actor=engine", headers=project.dashboard)
    assert status == 200
    reads = [(e["action"], e["store"], e["name"], e["node_id"]) for e in page["entries"]]
    assert ("read", "secret", "SIGNING_KEY", "verify") in reads, page
    status, meta = await stack.call("GET", f"/api/projects/{project.id}/secrets/SIGNING_KEY", headers=project.dashboard)
    assert meta["last_used_at"] and meta["used_by"] == ["stripe"]

    admin = {"Authorization": f"Bearer {stack.service.admin_token}"}
    status, _ = await stack.call("DELETE", f"/api/projects/{project.id}", headers=admin)
    assert status == 204
    status, body = await hook(stack, project, key)
    assert status == 404, body
    status, _ = await stack.call("GET", f"/api/engine/{project.id}/secrets", headers=project.engine)
    assert status == 401
    assert key not in stack.service.process.log_text() and key not in stack.worker.log_text()
