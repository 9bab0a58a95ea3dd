"""Driving a worker object from a test: wait for a particular change event, render a config."""

import asyncio
import time
from typing import Any

from contract.events import ChangeEvent, UnknownEvent
from contract.templates import Ref
from worker.context import ExecutionContext
from worker.runtime import Worker
from worker.templates import render


class Seen:
    """The change events a worker's listener applied, to wait for one in particular."""

    def __init__(self, worker: Worker) -> None:
        assert worker.listener is not None, "start() the worker first"
        self.events: list[tuple[str, int]] = []
        worker.listener.on_event = self

    def __call__(self, event: ChangeEvent | UnknownEvent) -> None:
        self.events.append((event.project, event.revision))

    async def wait_for(self, project: str, revision: int, timeout_s: float = 5.0) -> None:
        deadline = time.monotonic() + timeout_s
        while (project, revision) not in self.events:
            assert time.monotonic() < deadline, f"the worker never saw revision {revision} of {project}"
            await asyncio.sleep(0.002)


async def render_secrets(ctx: ExecutionContext, config: Any) -> Any:
    """Render a node config's `${ secrets.X }` / `${ ctx.secrets.X }` as the engine does when a node runs."""

    async def resolve(ref: Ref) -> Any:
        assert ref.root == "secrets", f"only secret references in these tests, not {ref.text}"
        return await ctx.secrets.get(ref.path[0])

    return await render(config, resolve)
