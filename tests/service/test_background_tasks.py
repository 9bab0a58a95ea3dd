"""A crashed writer or relay must stop the service rather than leave it answering without them."""

import asyncio
import signal

import pytest

from service import app as service_app


async def test_a_crashed_background_task_stops_the_service(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[int] = []
    monkeypatch.setattr(service_app.os, "kill", lambda pid, sig: sent.append(sig))

    async def crash() -> None:
        raise RuntimeError("boom")

    task = asyncio.create_task(crash(), name="relay")
    await asyncio.wait({task})
    service_app._stop_if_crashed(task)
    assert sent == [signal.SIGTERM]


async def test_a_cancelled_task_is_a_normal_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[int] = []
    monkeypatch.setattr(service_app.os, "kill", lambda pid, sig: sent.append(sig))
    task = asyncio.create_task(asyncio.sleep(10), name="writer")
    task.cancel()
    await asyncio.wait({task})
    service_app._stop_if_crashed(task)
    assert sent == []
