"""An execution's view of its project's secrets: `ctx.secrets.NAME` and `await ctx.secrets.get(NAME)`.

A value is decrypted on first use and kept for this execution only: until it ends, until the
TTL passes, or until a change event for the project arrives (the project's epoch moves), so the
next reference after a change sees the new value.
"""

import time

import msgspec

from contract.executions import SecretRead
from contract.sealing import SealError, open_sealed
from worker.errors import CredentialNotFound, SecretNotFound, SecretsNotLoaded, SecretUndecryptable
from worker.snapshots import ProjectState, Snapshot, SnapshotCache

STORE = "secret"
CREDENTIAL_STORE = "credential"


class ExecutionSecrets:
    __slots__ = ("_cache", "_project", "_state", "_token", "_ttl", "_values", "node_id", "reads", "revealed")

    def __init__(self, cache: SnapshotCache, project: str, token: str, ttl_s: float) -> None:
        self._cache = cache
        self._project = project
        self._token = token
        self._ttl = ttl_s
        self._state: ProjectState = cache.state(project)
        self._values: dict[str, tuple[str, int, float]] = {}  # name -> (value, epoch, expires)
        self.revealed: set[str] = set()  # every value handed out, for masking what the engine writes
        self.node_id = ""  # the node running now, set by the executor, for the audit of reads
        self.reads: list[SecretRead] = []

    def __repr__(self) -> str:
        return f"ExecutionSecrets(project={self._project!r}, cached={len(self._values)})"

    def __getattr__(self, name: str) -> str:
        if name.startswith("_"):  # a slot read before it is set must not recurse
            raise AttributeError(name)
        cached = self._cached(name)
        if cached is not None:
            return cached
        snapshot = self._state.snapshot
        if snapshot is None or snapshot.epoch != self._state.epoch or not self._cache.trusted:
            raise SecretsNotLoaded(f"secrets are being refreshed; use 'await ctx.secrets.get({name!r})'")
        if name not in snapshot.ciphertexts:
            raise SecretNotFound(name)
        return self._open(snapshot, name)

    async def get(self, name: str) -> str:
        cached = self._cached(name)
        if cached is not None:
            return cached
        snapshot = await self._current_snapshot()
        if name not in snapshot.ciphertexts:
            refreshed = await self._cache.refresh_for_miss(self._state, self._token)
            if refreshed is None or name not in refreshed.ciphertexts:
                raise SecretNotFound(name)
            snapshot = refreshed
        return self._open(snapshot, name)

    async def previous(self, name: str) -> list[str]:
        """The old value of `name` while its rotation overlap lasts (verify_webhook only), else []."""
        snapshot = await self._current_snapshot()
        entry = snapshot.previous.get(name)
        if entry is None or entry[1] <= time.time():
            return []
        value = self._unseal(snapshot, entry[0], STORE, name)
        self.revealed.add(value)
        return [value]

    async def credential(self, name: str) -> tuple[str, dict[str, str]]:
        """A typed credential's (type, fields); for integration nodes, never for templates or code."""
        snapshot = await self._current_snapshot()
        if name not in snapshot.credentials:
            refreshed = await self._cache.refresh_for_miss(self._state, self._token)
            if refreshed is None or name not in refreshed.credentials:
                raise CredentialNotFound(name)
            snapshot = refreshed
        kind, ciphertext = snapshot.credentials[name]
        fields = msgspec.json.decode(self._unseal(snapshot, ciphertext, CREDENTIAL_STORE, name), type=dict[str, str])
        self.revealed.update(value for value in fields.values() if value)
        self._note_read(name, "credential")
        return kind, fields

    async def load(self) -> None:
        """Make sure a current snapshot is at hand, so the synchronous form works."""
        await self._current_snapshot()

    def close(self) -> None:
        self._values.clear()

    def _cached(self, name: str) -> str | None:
        entry = self._values.get(name)
        if entry is None:
            return None
        value, epoch, expires = entry
        # Untrusted (the stream is not followed): a change could go unseen, so nothing cached counts.
        if epoch == self._state.epoch and self._cache.trusted and time.monotonic() < expires:
            return value
        del self._values[name]
        return None

    async def _current_snapshot(self) -> Snapshot:
        self._state = self._cache.state(self._project)  # the live state, should ours have been evicted
        return await self._cache.snapshot(self._state, self._token)

    def _unseal(self, snapshot: Snapshot, ciphertext: str, store: str, name: str) -> str:
        try:
            return open_sealed(snapshot.fernet, ciphertext, self._project, store, name)
        except SealError as exc:
            raise SecretUndecryptable(exc.message) from None

    def _open(self, snapshot: Snapshot, name: str) -> str:
        value = self._unseal(snapshot, snapshot.ciphertexts[name], STORE, name)
        self._values[name] = (value, snapshot.epoch, time.monotonic() + self._ttl)
        self.revealed.add(value)
        self._note_read(name, "secret")
        return value

    def _note_read(self, name: str, kind: str) -> None:
        read = SecretRead(node_id=self.node_id, name=name, kind="credential" if kind == "credential" else "secret")
        if read not in self.reads:
            self.reads.append(read)


class ExecutionContext:
    """What an execution runs with; an async context manager that forgets every value at the end."""

    def __init__(self, cache: SnapshotCache, project: str, token: str, ttl_s: float) -> None:
        self.project = project
        self.secrets = ExecutionSecrets(cache, project, token, ttl_s)

    async def __aenter__(self) -> "ExecutionContext":
        await self.secrets.load()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.secrets.close()
