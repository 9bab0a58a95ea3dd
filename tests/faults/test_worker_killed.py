"""A worker killed with SIGKILL in the middle of an execution (its slow http_request node is held
by a local server). No execution is lost: another worker reclaims it and completes it once, or,
with no worker left, the service marks it timed out and the webhook caller is told so; a worker
that comes later finds it finished and does not run it again.
"""

import asyncio
import signal
import time

import pytest

from tests.faults.conftest import Target
from tests.faults.helpers import FaultStack, wait_until_acked

pytestmark = pytest.mark.timeout(60)

RECLAIM_MS = "1000"


def slow_workflow(target: Target) -> dict[str, object]:
    call = {"method": "POST", "url": target.url("/slow"), "json": {}, "timeout_s": 30}
    reply = {"status": 200, "body": {"served_as_request": "${ nodes.call.output.json.n }"}}
    return {
        "trigger": {"type": "webhook"},
        "nodes": [
            {"id": "call", "type": "http_request", "config": call},
            {"id": "reply", "type": "respond", "config": reply},
        ],
    }


async def test_an_execution_whose_worker_is_killed_completes_on_another_worker(
    stack: FaultStack, target: Target
) -> None:
    await stack.start_service()
    doomed = await stack.start_worker("doomed", BACKEND_SECRETS_RECLAIM_AFTER_MS=RECLAIM_MS)
    doomed_pid = doomed.popen.pid  # type: ignore[union-attr]
    project = await stack.create_project()
    assert (await stack.api.put_workflow(project, "slow", slow_workflow(target))).status in (200, 201)
    target.hold = 1  # the first call never returns: its worker dies holding it

    call = asyncio.create_task(stack.api.hook(project, "slow", timeout_s=30))
    await target.wait_for_requests(1)
    doomed.stop(signal.SIGKILL)
    killed_at = time.monotonic()
    rescuer = await stack.start_worker("rescuer", BACKEND_SECRETS_RECLAIM_AFTER_MS=RECLAIM_MS)

    answer = await call
    assert answer.status == 200, (answer.status, answer.body)
    assert answer.body == {"served_as_request": 2}  # the second call: made by the rescuer
    assert time.monotonic() - killed_at < 10
    [summary] = await stack.api.executions(project)
    record = await stack.api.execution(project, summary["id"])
    assert record["status"] == "succeeded" and record["attempt"] == 2, (record["status"], record["attempt"])
    rescuer_pid = rescuer.popen.pid  # type: ignore[union-attr]
    assert f"-{rescuer_pid}-" in record["worker"] and f"-{doomed_pid}-" not in record["worker"], record["worker"]
    assert "reclaimed execution message" in rescuer.log_text()
    assert await wait_until_acked(stack.redis.url, stack.streams.executions) == 0
    await asyncio.sleep(1.5)  # past another reclaim period: nobody runs it a third time
    assert len(target.requests) == 2


async def test_an_execution_whose_only_worker_is_killed_times_out_and_is_never_run_again(
    stack: FaultStack, target: Target
) -> None:
    await stack.start_service(BACKEND_SECRETS_HOOK_TIMEOUT_S="3")
    doomed = await stack.start_worker("doomed", BACKEND_SECRETS_RECLAIM_AFTER_MS=RECLAIM_MS)
    project = await stack.create_project()
    assert (await stack.api.put_workflow(project, "slow", slow_workflow(target))).status in (200, 201)
    target.hold = 1

    call = asyncio.create_task(stack.api.hook(project, "slow", timeout_s=30))
    await target.wait_for_requests(1)
    doomed.stop(signal.SIGKILL)

    # The caller gets an answer: 504 naming the execution, which is recorded as timed out.
    answer = await call
    assert answer.status == 504 and answer.elapsed_s < 6, (answer.status, answer.elapsed_s)
    assert answer.body["error"]["code"] == "execution_timeout", answer.body
    execution_id = answer.body["error"]["execution_id"]
    record = await stack.api.execution(project, execution_id)
    assert record["status"] == "timed_out" and record["error"]["code"] == "execution_timeout", record["status"]

    # A worker that starts later reclaims the message, finds it finished, acks it and runs nothing.
    late = await stack.start_worker("late", BACKEND_SECRETS_RECLAIM_AFTER_MS=RECLAIM_MS)
    await late.wait_for_log("already finished; skipping", timeout_s=10)
    assert await wait_until_acked(stack.redis.url, stack.streams.executions) == 0
    assert len(target.requests) == 1
    assert (await stack.api.execution(project, execution_id))["status"] == "timed_out"

    # And the late worker serves new executions.
    target.hold = 0
    answer = await stack.api.hook(project, "slow", timeout_s=10)
    assert answer.status == 200 and answer.body == {"served_as_request": 2}, (answer.status, answer.body)
