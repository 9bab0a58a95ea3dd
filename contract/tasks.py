"""Stopping background tasks reliably, for both programs.

On Python 3.11 `asyncio.wait_for` (inside redis-py's send) swallows a cancel that lands just as
its inner call finishes, so a loop around a Redis call may survive one `cancel()`: cancel until
it ends.
"""

import asyncio
import contextlib
from typing import Any


async def cancel_and_wait(task: "asyncio.Task[Any]") -> None:
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.2)
    with contextlib.suppress(asyncio.CancelledError, Exception):  # a crash was reported when it happened
        await task
