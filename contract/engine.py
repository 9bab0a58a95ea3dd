"""The engine endpoint's answer (`GET /api/engine/{p}/secrets`): ciphertexts, never plaintext.

`data_key` is the project's Fernet key, so that the worker can decrypt values itself, at the
moment an execution reads them; the master keys never leave the service. An engine delta is one
change to that answer, without the key (`EngineDelta`).
"""

from typing import Final

import msgspec


class EngineSecret(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """`previous_ciphertext`: during a signing-key rotation's overlap window (until the Unix time
    `previous_valid_until`) the old value, which only verify_webhook may use."""

    name: str
    version: int
    ciphertext: str
    previous_ciphertext: str | None = None
    previous_valid_until: float | None = None


class EngineCredential(msgspec.Struct, frozen=True, kw_only=True):
    """A typed credential; its ciphertext (store "credential") opens to the JSON of its fields."""

    name: str
    type: str
    version: int
    ciphertext: str


class EngineSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    project: str
    revision: int
    data_key: str
    secrets: list[EngineSecret] = msgspec.field(default_factory=list)
    credentials: list[EngineCredential] = msgspec.field(default_factory=list)

    def __repr__(self) -> str:  # the data key must not reach a log through a repr
        return f"EngineSnapshot(project={self.project!r}, revision={self.revision}, secrets={len(self.secrets)})"


class EngineDelta(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One change to a project's engine snapshot, fully known when it committed: the relay leaves
    it in Redis beside its change event for a minute (service.relay), so a worker holding the
    snapshot of the revision before patches it instead of fetching the whole snapshot again.
    Ciphertext only, never the project key: it opens nothing without the engine endpoint.

    `secret`: what a `secret.put` wrote, as the engine endpoint shows it (its overlap included).
    """

    project: str
    revision: int
    secret: EngineSecret | None = None

    def __repr__(self) -> str:  # no ciphertext in a log line either
        name, version = (self.secret.name, self.secret.version) if self.secret else (None, None)
        return f"EngineDelta(project={self.project!r}, revision={self.revision}, name={name!r}, version={version})"


snapshot_encoder: Final = msgspec.json.Encoder()
snapshot_decoder: Final = msgspec.json.Decoder(EngineSnapshot)
delta_encoder: Final = msgspec.json.Encoder()
delta_decoder: Final = msgspec.json.Decoder(EngineDelta)
