"""Per-project snapshots of the engine endpoint's answer: ciphertexts and the project key.

Bounded (LRU by project), filled on demand with one fetch in flight per project. A change
event bumps the project's epoch and drops its snapshot; a fetch that started before then is
kept only if its revision is at least the event's, so stale data never comes back. When the
listener loses the stream, every project is dropped and nothing is kept until it is back.
"""

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from cryptography.fernet import Fernet

from contract.engine import EngineSnapshot
from worker.errors import SnapshotUnavailable

log = logging.getLogger("worker.snapshots")

Fetch = Callable[[str, str], Awaitable[EngineSnapshot]]
MAX_FETCH_ATTEMPTS = 5
STALE_EPOCH = -1  # never equal to a project's epoch


class Snapshot:
    """A decoded snapshot: a Fernet built once and ciphertexts by name. Plaintext never lives here."""

    __slots__ = ("ciphertexts", "credentials", "epoch", "fernet", "previous", "revision")

    def __init__(self, source: EngineSnapshot, epoch: int) -> None:
        self.revision = source.revision
        self.fernet = Fernet(source.data_key)
        self.ciphertexts = {s.name: s.ciphertext for s in source.secrets}
        # name -> (old ciphertext, valid until): a signing key's overlap window, for verify_webhook only
        self.previous = {
            s.name: (s.previous_ciphertext, s.previous_valid_until or 0.0)
            for s in source.secrets
            if s.previous_ciphertext
        }
        self.credentials = {c.name: (c.type, c.ciphertext) for c in source.credentials}
        self.epoch = epoch

    def __repr__(self) -> str:
        return f"Snapshot(revision={self.revision}, secrets={len(self.ciphertexts)})"


class ProjectState:
    """What the worker knows of one project. Executions compare `epoch` to see a change."""

    __slots__ = ("epoch", "floor_epoch", "inflight", "last_miss_refresh", "min_revision", "project", "snapshot")

    def __init__(self, project: str) -> None:
        self.project = project
        self.epoch = 0
        self.floor_epoch = 0  # fetches started before this epoch are not trusted (after a drop-all)
        self.min_revision = 0  # the newest revision an event announced
        self.snapshot: Snapshot | None = None
        self.inflight: asyncio.Future[tuple[Snapshot, int]] | None = None
        self.last_miss_refresh = float("-inf")

    def invalidate(self, revision: int | None) -> bool:
        """Drop the snapshot if it is older than `revision` (None: whatever it is). True if dropped."""
        if revision is not None:
            self.min_revision = max(self.min_revision, revision)
            if self.snapshot is None or self.snapshot.revision >= revision:
                return False  # nothing to drop: values cached from an older snapshot are stale already
        else:
            self.floor_epoch = self.epoch + 1
        self.epoch += 1
        self.snapshot = None
        return True


class SnapshotCache:
    def __init__(self, fetch: Fetch, *, max_projects: int, miss_refresh_interval_s: float) -> None:
        self._fetch = fetch
        self._max_projects = max_projects
        self._miss_interval = miss_refresh_interval_s
        self._states: OrderedDict[str, ProjectState] = OrderedDict()
        self.trusted = False  # True only while the listener follows the stream
        self.stats = {"hits": 0, "misses": 0, "evictions": 0, "invalidations": 0, "drops": 0}

    def __len__(self) -> int:
        return len(self._states)

    def state(self, project: str) -> ProjectState:
        state = self._states.get(project)
        if state is None:
            state = self._states[project] = ProjectState(project)
            self._evict_over_bound()
        else:
            self._states.move_to_end(project)
        return state

    def _evict_over_bound(self) -> None:
        while len(self._states) > self._max_projects:
            _, evicted = self._states.popitem(last=False)
            evicted.invalidate(None)  # executions holding it re-read through state()
            self.stats["evictions"] += 1

    def invalidate(self, project: str, revision: int | None) -> None:
        state = self._states.get(project)
        if state is not None and state.invalidate(revision):
            self.stats["invalidations"] += 1

    def forget(self, project: str) -> None:
        state = self._states.pop(project, None)
        if state is not None:
            state.invalidate(None)

    def drop_all(self, reason: str) -> None:
        for state in self._states.values():
            state.invalidate(None)
        self.stats["drops"] += 1
        log.info("dropped every cached snapshot (%d projects): %s", len(self._states), reason)

    async def snapshot(self, state: ProjectState, token: str) -> Snapshot:
        current = state.snapshot
        if current is not None and self.trusted and current.epoch == state.epoch:
            self.stats["hits"] += 1
            return current
        self.stats["misses"] += 1
        return await self._single_flight(state, token)

    async def refresh_for_miss(self, state: ProjectState, token: str) -> Snapshot | None:
        """One refetch when a name is missing, at most once per interval per project."""
        now = time.monotonic()
        if now - state.last_miss_refresh < self._miss_interval:
            return None
        state.last_miss_refresh = now
        state.invalidate(None)
        return await self._single_flight(state, token)

    async def _single_flight(self, state: ProjectState, token: str) -> Snapshot:
        """A snapshot at least as new as what this caller knows of: the revision announced and the
        last drop when it asked. A fetch in flight is shared while it satisfies that; under a burst
        of changes the caller takes the first one that does, even if newer events came meanwhile."""
        need_revision, need_epoch = state.min_revision, state.floor_epoch
        for attempt in range(MAX_FETCH_ATTEMPTS):
            if state.inflight is None:
                state.inflight = asyncio.ensure_future(self._fetch_fresh(state, token))
                state.inflight.add_done_callback(lambda _: setattr(state, "inflight", None))
            snapshot, started_epoch = await asyncio.shield(state.inflight)
            if attempt == 0:  # first, try for one that is current now; then settle for what we asked for
                need_revision, need_epoch = state.min_revision, state.floor_epoch
            if snapshot.revision >= need_revision and started_epoch >= need_epoch:
                return snapshot
        raise SnapshotUnavailable(f"the secrets of {state.project!r} could not be fetched consistently; try again")

    async def _fetch_fresh(self, state: ProjectState, token: str) -> tuple[Snapshot, int]:
        """One fetch; kept for everyone only if nothing newer was announced while it ran. One that
        is already overtaken gets an epoch no execution matches, so no value outlives its use."""
        started_epoch = state.epoch
        source = await self._fetch(state.project, token)
        current = started_epoch >= state.floor_epoch and source.revision >= state.min_revision
        snapshot = Snapshot(source, state.epoch if current else STALE_EPOCH)
        if current and self.trusted:
            state.snapshot = snapshot
        return snapshot, started_epoch
