"""Each project's current revision, known in memory, so an execution request is stamped with it
without a database round trip.

Read from the database the first time a project asks, then kept current by the committed events:
every change bumps its project's revision and emits an event that carries it, and the writer
hands events over before the writes are answered. A change answered before a webhook arrived is
therefore counted in that webhook's revision, and the worker serves nothing older.
"""

from collections.abc import Sequence

import aiosqlite

from contract.events import ChangeEvent, ProjectDeleted, UnknownEvent
from service.store.db import fetch_one


class ProjectRevisions:
    def __init__(self, reader: aiosqlite.Connection) -> None:
        self._reader = reader
        self._known: dict[str, int] = {}

    async def current(self, project_id: str) -> int | None:
        """None for a project that does not exist."""
        known = self._known.get(project_id)
        if known is not None:
            return known
        row = await fetch_one(self._reader, "SELECT revision FROM projects WHERE id = ?", (project_id,))
        if row is None:
            return None
        return self._raise(project_id, int(row[0]))  # a change may have committed during the read

    def _raise(self, project_id: str, revision: int) -> int:
        newest = self._known[project_id] = max(revision, self._known.get(project_id, 0))
        return newest

    def committed(self, events: Sequence[ChangeEvent | UnknownEvent]) -> None:
        for event in events:
            if isinstance(event, ProjectDeleted):
                self._known.pop(event.project, None)
            elif event.project in self._known:  # only projects asked for are kept
                self._raise(event.project, event.revision)
