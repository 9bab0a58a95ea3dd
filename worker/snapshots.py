"""Per-project snapshots of the engine endpoint's answer: ciphertexts and the project key.

Bounded (LRU by project), filled on demand with one fetch in flight per project. A change
event bumps the project's epoch and drops its snapshot; a fetch that started before then is
kept only if its revision is at least the event's, so stale data never comes back. When the
listener loses the stream, every project is dropped and nothing is kept until it is back.

An event whose effect is fully known patches the snapshot of the revision just before it
instead of dropping it: at once for a `secret.delete` or a change to a store the engine does
not read; for a `secret.put`, from its engine delta: at once when the listener read it with the
event, else read from Redis while executions wait on it as they would on a fetch. Anything
else, or anything unexpected, drops and fetches as above.
"""

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from cryptography.fernet import Fernet

from contract.engine import EngineDelta, EngineSecret, EngineSnapshot
from contract.events import (
    ChangeEvent,
    FrontendVarDeleted,
    FrontendVarPut,
    ProjectDeleted,
    SecretDeleted,
    SecretPut,
    UnknownEvent,
    WorkflowDeleted,
    WorkflowPut,
)
from worker.errors import SnapshotUnavailable

log = logging.getLogger("worker.snapshots")

Fetch = Callable[[str, str], Awaitable[EngineSnapshot]]
LoadDelta = Callable[[], Awaitable[EngineDelta | None]]  # the engine delta of one event, None if unreadable
DeltaSource = EngineDelta | LoadDelta | None  # an event's engine delta: at hand, to be read, or none
# What the listener hands over for a delta it looked for with the event and found missing or garbled:
# it describes no event, so the put falls back to a fetch and counts as a fallback, as a failed read does.
MISSING_DELTA = EngineDelta(project="", revision=-1)
Outcome = tuple["Snapshot", int] | None  # (snapshot, epoch its source started at); None: a patch that failed
MAX_FETCH_ATTEMPTS = 5
STALE_EPOCH = -1  # never equal to a project's epoch
# Changes to stores the engine snapshot does not hold: only the revision moves.
ENGINE_BLIND: tuple[type[ChangeEvent], ...] = (FrontendVarPut, FrontendVarDeleted, WorkflowPut, WorkflowDeleted)


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

    def successor(self, revision: int, epoch: int) -> "Snapshot":
        """A copy at `revision`, for a change patched in: the Fernet and credentials shared, the
        secrets' tables copied (a snapshot handed out never changes under its reader)."""
        copy = object.__new__(Snapshot)
        copy.revision, copy.epoch, copy.fernet, copy.credentials = revision, epoch, self.fernet, self.credentials
        copy.ciphertexts, copy.previous = dict(self.ciphertexts), dict(self.previous)
        return copy

    def with_secret(self, secret: EngineSecret, revision: int, epoch: int) -> "Snapshot":
        patched = self.without_secret(secret.name, revision, epoch)
        patched.ciphertexts[secret.name] = secret.ciphertext
        if secret.previous_ciphertext:
            patched.previous[secret.name] = (secret.previous_ciphertext, secret.previous_valid_until or 0.0)
        return patched

    def without_secret(self, name: str, revision: int, epoch: int) -> "Snapshot":
        patched = self.successor(revision, epoch)
        patched.ciphertexts.pop(name, None)
        patched.previous.pop(name, None)
        return patched


class ProjectState:
    """What the worker knows of one project. Executions compare `epoch` to see a change."""

    __slots__ = (
        "epoch",
        "fetching",
        "floor_epoch",
        "inflight",
        "last_miss_refresh",
        "min_revision",
        "project",
        "snapshot",
    )

    def __init__(self, project: str) -> None:
        self.project = project
        self.epoch = 0
        self.floor_epoch = 0  # fetches started before this epoch are not trusted (after a drop-all)
        self.min_revision = 0  # the newest revision an event announced
        self.snapshot: Snapshot | None = None
        self.inflight: asyncio.Future[Outcome] | None = None  # a fetch, or a patch from an engine delta
        self.fetching = False  # the flight is a fetch: it reads the newest revision there is
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
        self.stats = {
            "hits": 0,
            "misses": 0,
            "evictions": 0,
            "invalidations": 0,
            "drops": 0,
            "fetches": 0,  # snapshots fetched from the engine endpoint
            "patches": 0,  # snapshots moved to an event's revision without a fetch
            "deltas": 0,  # of which `secret.put`s patched from their engine delta
            "deltas_at_hand": 0,  # of which with the delta read together with the event
            "delta_fallbacks": 0,  # engine deltas missing or not matching their event: fetched instead
        }

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

    def apply(self, event: ChangeEvent | UnknownEvent, delta: DeltaSource = None) -> None:
        """What a change event does to its project: patched when its effect is fully known and the
        snapshot held is the one just before it, else dropped as `invalidate` does."""
        if isinstance(event, ProjectDeleted):
            self.forget(event.project)
            return
        state = self._states.get(event.project)
        base = self._patch_base(state, event.revision) if state is not None else None
        if state is None or base is None or not self._patch(state, base, event, delta):
            self.invalidate(event.project, event.revision)

    def _patch_base(self, state: ProjectState, revision: int) -> Snapshot | None:
        """The snapshot a change to `revision` can be applied to: current, trusted, nothing in flight."""
        base = state.snapshot
        if base is None or not self.trusted or base.epoch != state.epoch or state.inflight is not None:
            return None
        return base if base.revision == revision - 1 else None

    def _patch(
        self, state: ProjectState, base: Snapshot, event: ChangeEvent | UnknownEvent, delta: DeltaSource
    ) -> bool:
        """Apply `event` to `base` if this kind of change can be; False (nothing done) if not.
        The epoch moves at once either way, so values read before the change are not served again."""
        revision = event.revision
        if isinstance(event, SecretDeleted):
            state.invalidate(revision)
            state.snapshot = base.without_secret(event.name, revision, state.epoch)
        elif isinstance(event, ENGINE_BLIND):
            state.invalidate(revision)
            state.snapshot = base.successor(revision, state.epoch)
        elif isinstance(event, SecretPut) and delta is not None:
            if isinstance(delta, EngineDelta):
                return self._patch_at_once(state, base, event, delta)
            state.invalidate(revision)
            self._start_flight(state, self._patch_from_delta(state, state.epoch, base, event, delta))
            return True
        else:
            return False
        self.stats["patches"] += 1
        return True

    def _patch_at_once(self, state: ProjectState, base: Snapshot, event: SecretPut, delta: EngineDelta) -> bool:
        secret = written_by(delta, event)
        if secret is None:
            self.stats["delta_fallbacks"] += 1
            return False
        state.invalidate(event.revision)
        state.snapshot = base.with_secret(secret, event.revision, state.epoch)
        for counter in ("patches", "deltas", "deltas_at_hand"):
            self.stats[counter] += 1
        return True

    async def _patch_from_delta(
        self, state: ProjectState, started_epoch: int, base: Snapshot, event: SecretPut, load: LoadDelta
    ) -> Outcome:
        """The snapshot after `event`, from its engine delta; None (each waiter then fetches) if the
        delta cannot be read or does not describe exactly this event. `started_epoch`: the project's
        epoch when the event was applied, which `base` is current for."""
        delta = await load()
        secret = written_by(delta, event) if delta is not None else None
        if secret is None:
            self.stats["delta_fallbacks"] += 1
            log.debug("no usable engine delta for %s revision %d: fetching", event.project, event.revision)
            return None
        self.stats["patches"] += 1
        self.stats["deltas"] += 1
        return self._settle(
            state, started_epoch, event.revision, lambda epoch: base.with_secret(secret, event.revision, epoch)
        )

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
        last drop when it asked. A fetch (or patch) in flight is shared while it satisfies that; under
        a burst of changes the caller takes the first one that does, even if newer events came meanwhile."""
        need_revision, need_epoch = state.min_revision, state.floor_epoch
        for attempt in range(MAX_FETCH_ATTEMPTS):
            flight = state.inflight
            # A retry does not wait on another patch: under a burst of changes each patch is one
            # revision behind the next event. A fetch reads the newest, so one retry is enough.
            if flight is None or (attempt > 0 and not state.fetching):
                flight = self._start_flight(state, self._fetch_fresh(state, token), fetching=True)
            outcome = await asyncio.shield(flight)
            if attempt == 0:  # first, try for one that is current now; then settle for what we asked for
                need_revision, need_epoch = state.min_revision, state.floor_epoch
            if outcome is None:
                continue  # a patch that could not be made: this caller fetches, with its own token
            snapshot, started_epoch = outcome
            if snapshot.revision >= need_revision and started_epoch >= need_epoch:
                return snapshot
        raise SnapshotUnavailable(f"the secrets of {state.project!r} could not be fetched consistently; try again")

    def _start_flight(
        self, state: ProjectState, work: Awaitable[Outcome], *, fetching: bool = False
    ) -> "asyncio.Future[Outcome]":
        flight = state.inflight = asyncio.ensure_future(work)
        state.fetching = fetching

        def landed(_: object) -> None:  # runs before any waiter resumes, so one that retries starts anew
            if state.inflight is flight:
                state.inflight = None

        flight.add_done_callback(landed)
        return flight

    async def _fetch_fresh(self, state: ProjectState, token: str) -> Outcome:
        started_epoch = state.epoch
        source = await self._fetch(state.project, token)
        self.stats["fetches"] += 1
        return self._settle(state, started_epoch, source.revision, lambda epoch: Snapshot(source, epoch))

    def _settle(
        self, state: ProjectState, started_epoch: int, revision: int, build: Callable[[int], Snapshot]
    ) -> Outcome:
        """A fetched or patched snapshot, kept for everyone only if nothing newer was announced while it
        was made. One already overtaken gets an epoch no execution matches, so no value outlives its use."""
        current = started_epoch >= state.floor_epoch and revision >= state.min_revision
        snapshot = build(state.epoch if current else STALE_EPOCH)
        if current and self.trusted:
            state.snapshot = snapshot
        return snapshot, started_epoch


def written_by(delta: EngineDelta, event: SecretPut) -> EngineSecret | None:
    """The secret `delta` says `event` wrote; None unless it describes exactly that event."""
    secret = delta.secret
    if secret is None or (delta.project, delta.revision) != (event.project, event.revision):
        return None
    return secret if (secret.name, secret.version) == (event.name, event.version) else None
