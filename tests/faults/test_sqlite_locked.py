"""SQLite locked by another process (`BEGIN EXCLUSIVE`) for longer than the service's busy timeout
(500 ms here).

Writes wait within a bound, then fail with a clear 503 `database_busy` (the contract's error
shape, no stack trace, no 500); reads keep working (WAL: a writer's lock does not stop readers;
and another process cannot take the whole file while the service holds its WAL connections);
once the lock is gone, writes succeed again and the refused ones left nothing behind.
"""

import asyncio
import textwrap

import pytest

from tests.faults.helpers import Answer, FaultStack, Project, make_value
from tests.support.api import SNAKE_CASE

pytestmark = pytest.mark.timeout(60)

BUSY_MS = 500
MAX_HOLD_S = 20.0  # the locker lets go when the test says so (a file appears), or after this
BOUND_S = 4 * BUSY_MS / 1000  # a request waits at most a few busy timeouts (its batch, and the one before)


def locker_code(db: str, release: str) -> str:
    return textwrap.dedent(f"""
        import os, sqlite3, time
        conn = sqlite3.connect({db!r}, isolation_level=None, timeout=5)
        conn.execute("BEGIN EXCLUSIVE")
        print("LOCK-HELD", flush=True)
        deadline = time.monotonic() + {MAX_HOLD_S}
        while not os.path.exists({release!r}) and time.monotonic() < deadline:
            time.sleep(0.02)
        conn.execute("COMMIT")
        conn.close()
        print("LOCK-RELEASED", flush=True)
    """)


def assert_busy(answer: Answer, what: str) -> None:
    assert answer.status == 503, f"{what}: {answer.status} {answer.body!r}"
    assert answer.content_type == "application/json", what
    assert set(answer.body) == {"error"} and set(answer.body["error"]) == {"code", "message"}, answer.body
    assert answer.body["error"]["code"] == "database_busy", answer.body
    assert SNAKE_CASE.fullmatch(answer.body["error"]["code"]) and answer.body["error"]["message"].strip()
    assert "Traceback" not in answer.body["error"]["message"]


async def reads(stack: FaultStack, project: Project) -> list[Answer]:
    paths = [
        (f"/api/projects/{project.id}/secrets", project.dashboard),
        (f"/api/projects/{project.id}/secrets/API_KEY", project.dashboard),
        (f"/api/engine/{project.id}/secrets", project.engine),
    ]
    return list(await asyncio.gather(*(stack.api.call("GET", path, headers=h) for path, h in paths * 3)))


async def test_a_database_locked_by_another_process_answers_503_within_a_bound_then_recovers(
    stack: FaultStack,
) -> None:
    await stack.start_service(BACKEND_SECRETS_SQLITE_BUSY_MS=str(BUSY_MS))
    project = await stack.create_project()
    assert (await stack.api.put_secret(project, "API_KEY", make_value("v1"))).status == 201
    assert (await stack.api.call("GET", f"/api/engine/{project.id}/secrets", headers=project.engine)).status == 200
    respond = {"nodes": [{"id": "reply", "type": "respond", "config": {"body": "ok"}}]}
    assert (await stack.api.put_workflow(project, "hook", respond)).status in (200, 201)
    log_at = len(stack.service.process.log_text())  # type: ignore[union-attr]

    release = stack.folder / "release-the-lock"
    locker = stack.start_python("locker", locker_code(str(stack.db_path), str(release)))
    await locker.wait_for_log("LOCK-HELD", timeout_s=5)

    # Concurrent writes and reads while the lock is held.
    writes = stack.api.put_secret
    puts, got = await asyncio.gather(
        asyncio.gather(*(writes(project, f"W{i}", make_value("locked")) for i in range(12))),
        reads(stack, project),
    )
    for answer in puts:
        assert_busy(answer, "a write under the lock")
        assert answer.elapsed_s < BOUND_S, f"a write waited {answer.elapsed_s:.2f} s"
    for answer in got:
        if answer.status != 200:
            assert_busy(answer, "a read under the lock")
        assert answer.elapsed_s < BOUND_S, f"a read waited {answer.elapsed_s:.2f} s"
    assert {a.status for a in got} == {200}, "WAL readers are not blocked by a writer's lock"

    # One after another, each write is refused in about one busy timeout: nothing piles up. A webhook
    # (its execution record is a write) and a new project are refused the same way.
    answer = await writes(project, "API_KEY", make_value("still-locked"))
    assert_busy(answer, "a later write under the lock")
    assert answer.elapsed_s < BOUND_S
    answer = await stack.api.call("POST", f"/hooks/{project.id}/hook", json={})
    assert_busy(answer, "a webhook under the lock")
    admin = {"Authorization": f"Bearer {stack.admin_token}"}
    assert_busy(await stack.api.call("POST", "/api/projects", json={"name": "Late"}, headers=admin), "a project")

    # The lock goes: writes succeed again, and the refused ones left nothing behind.
    assert "LOCK-RELEASED" not in locker.log_text(), "the lock went before the test was done with it"
    release.touch()
    await locker.wait_for_log("LOCK-RELEASED", timeout_s=5)
    answer = await writes(project, "API_KEY", make_value("v2"))
    assert answer.status == 200 and answer.body["version"] == 2, (answer.status, answer.body)
    listed = await stack.api.call("GET", f"/api/projects/{project.id}/secrets", headers=project.dashboard)
    assert [s["name"] for s in listed.body["secrets"]] == ["API_KEY"]

    log = stack.service.process.log_text()[log_at:]  # type: ignore[union-attr]
    assert '"status": 500' not in log and "Traceback" not in log, "a 500 or a stack trace under the lock"
