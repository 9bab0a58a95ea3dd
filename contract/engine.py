"""The engine endpoint's answer (`GET /api/engine/{p}/secrets`): ciphertexts, never plaintext.

`data_key` is the project's Fernet key, so that the worker can decrypt values itself, at the
moment an execution reads them; the master keys never leave the service.
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


snapshot_encoder: Final = msgspec.json.Encoder()
snapshot_decoder: Final = msgspec.json.Decoder(EngineSnapshot)
