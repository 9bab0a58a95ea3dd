"""Every Redis key name the two programs share, in one place (as arq's constants module)."""

from dataclasses import dataclass

DEFAULT_PREFIX = "backend-secrets"


@dataclass(frozen=True, slots=True)
class Streams:
    """Stream names under one configurable prefix, so tests and tenants can keep apart."""

    prefix: str = DEFAULT_PREFIX

    @property
    def events(self) -> str:
        return f"{self.prefix}:events"

    @property
    def executions(self) -> str:
        return f"{self.prefix}:executions"


# Stream entry field names.
FIELD_EVENT = b"e"
FIELD_SEQ = b"seq"
FIELD_ORIGIN = b"origin"  # the database that wrote the event: seqs compare only within one
