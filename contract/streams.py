"""Every Redis key name the two programs share, in one place (as arq's constants module)."""

from dataclasses import dataclass

DEFAULT_PREFIX = "backend-secrets"


@dataclass(frozen=True, slots=True)
class Streams:
    """Key names (streams, engine deltas) under one configurable prefix, so tests and tenants keep apart."""

    prefix: str = DEFAULT_PREFIX

    @property
    def events(self) -> str:
        return f"{self.prefix}:events"

    @property
    def executions(self) -> str:
        return f"{self.prefix}:executions"

    @property
    def results(self) -> str:
        """Workers' reports on executions (started, finished), read by the service."""
        return f"{self.prefix}:results"

    def engine_delta(self, origin: str, seq: int) -> str:
        """The engine delta (contract.engine.EngineDelta) of event `seq` of database `origin`:
        a string key that expires a minute after its event was published (service.relay)."""
        return f"{self.prefix}:engine-delta:{origin}:{seq}"

    @classmethod
    def around(cls, events: str) -> "Streams":
        """The names that sit beside the events stream `events`, for code handed that name alone."""
        return cls(events.removesuffix(":events"))


# Stream entry field names.
FIELD_EVENT = b"e"
FIELD_SEQ = b"seq"
FIELD_ORIGIN = b"origin"  # the database that wrote the event: seqs compare only within one
