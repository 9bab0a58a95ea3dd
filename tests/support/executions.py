"""Waiting for an execution record to reach a state, through the dashboard API."""

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp.test_utils import TestClient

from tests.conftest import Project


async def record(api: TestClient, project: Project, execution_id: str) -> dict[str, Any]:
    response = await api.get(f"/api/projects/{project.id}/executions/{execution_id}", headers=project.dashboard)
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def until_status(api: TestClient, project: Project, execution_id: str, status: str) -> dict[str, Any]:
    async def reached() -> bool:
        return bool((await record(api, project, execution_id))["status"] == status)

    await eventually(reached, f"execution {execution_id} to be {status}")
    return await record(api, project, execution_id)
