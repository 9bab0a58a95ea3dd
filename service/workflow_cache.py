"""The workflows that executions run, kept in memory: a webhook reads no database on its way to
the queue.

Filled on first use, bounded (LRU). The writer hands every committed event to `committed` before
the writes' answers go out, and an event of a workflow (or of its project) drops that entry, so a
webhook that arrives after a save's 2xx runs what was saved. A read that was in flight while a
change committed is answered but not kept (the generation moved on).
"""

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Final

import aiosqlite
import msgspec

from contract.events import ChangeEvent, ProjectDeleted, UnknownEvent, WorkflowDeleted, WorkflowPut
from service.store.workflows import StoredWorkflow, decode_definition, definition_dict, find_workflow

MAX_ENTRIES: Final = 10_000


class RunnableWorkflow(msgspec.Struct, frozen=True, kw_only=True):
    stored: StoredWorkflow
    definition: dict[str, Any]  # what an ExecutionRequest carries, decoded once
    webhook: bool  # its trigger is a webhook


def runnable(stored: StoredWorkflow) -> RunnableWorkflow:
    webhook = decode_definition(stored).trigger.type == "webhook"
    return RunnableWorkflow(stored=stored, definition=definition_dict(stored), webhook=webhook)


class WorkflowCache:
    def __init__(self, reader: aiosqlite.Connection, max_entries: int = MAX_ENTRIES) -> None:
        self._reader = reader
        self._max_entries = max_entries
        self._entries: OrderedDict[tuple[str, str], RunnableWorkflow | None] = OrderedDict()
        self._generation = 0

    async def get(self, project_id: str, name: str) -> RunnableWorkflow | None:
        key = (project_id, name)
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        generation = self._generation
        stored = await find_workflow(self._reader, project_id, name)
        found = None if stored is None else runnable(stored)
        if generation == self._generation:  # else a change committed meanwhile: do not keep it
            self._keep(key, found)
        return found

    def _keep(self, key: tuple[str, str], found: RunnableWorkflow | None) -> None:
        self._entries[key] = found
        if len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def committed(self, events: Sequence[ChangeEvent | UnknownEvent]) -> None:
        for event in events:
            if isinstance(event, WorkflowPut | WorkflowDeleted):
                self._entries.pop((event.project, event.name), None)
            elif isinstance(event, ProjectDeleted):
                for key in [key for key in self._entries if key[0] == event.project]:
                    del self._entries[key]
            else:
                continue
            self._generation += 1
