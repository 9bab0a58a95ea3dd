"""A heartbeat file for container health checks, touched while the worker follows the events stream.

Set BACKEND_SECRETS_WORKER_HEARTBEAT to a path and the worker touches it every few seconds for as
long as its listener is connected; `python -m worker --check` exits 0 while the file is fresh. A
worker that lost Redis cannot keep its caches honest, so it stops beating and turns unhealthy.
"""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path

from contract.config import read_env

HEARTBEAT = "BACKEND_SECRETS_WORKER_HEARTBEAT"
INTERVAL_S = 5.0
STALE_AFTER_S = 3 * INTERVAL_S


def heartbeat_path(environ: Mapping[str, str]) -> Path | None:
    raw = read_env(environ, HEARTBEAT)
    return Path(raw) if raw else None


def _touch(path: Path) -> None:
    path.touch()  # updates the mtime of an existing file


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


async def _beat(path: Path, alive: Callable[[], bool], interval_s: float) -> None:
    while True:
        if alive():
            _touch(path)
        await asyncio.sleep(interval_s)


@contextlib.asynccontextmanager
async def heartbeat(
    path: Path | None, alive: Callable[[], bool], interval_s: float = INTERVAL_S
) -> AsyncIterator[None]:
    """Beat into `path` while `alive()` holds, until the block ends; then remove the file."""
    if path is None:
        yield
        return
    task = asyncio.create_task(_beat(path, alive, interval_s), name="heartbeat")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        _remove(path)


def check(path: Path | None, stale_after_s: float = STALE_AFTER_S) -> tuple[int, str]:
    """The exit code and message of `python -m worker --check`: 0 healthy, 1 stale, 2 not configured."""
    if path is None:
        return 2, f"{HEARTBEAT} is not set, so there is no heartbeat to check"
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return 1, f"no heartbeat at {path}: the worker is not following the events stream"
    if age > stale_after_s:
        return 1, f"the heartbeat at {path} is {age:.0f} s old: the worker is not following the events stream"
    return 0, f"ok: heartbeat {age:.1f} s old"
