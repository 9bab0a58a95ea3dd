"""Change events published on the events stream: a tagged union of msgspec Structs.

Never a value: an event names what changed, not what it changed to. New fields always get
defaults so older and newer processes can read each other's events (msgspec schema evolution).
"""

from typing import Final

import msgspec


class ChangeEvent(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Fields every change carries.

    seq: the service-wide event sequence; consecutive, so a reader can tell it missed one.
    revision: the project's revision after this change.
    committed_at: Unix time of the commit, for propagation-lag figures.
    """

    seq: int
    project: str
    revision: int
    committed_at: float = 0.0


class ProjectCreated(ChangeEvent, frozen=True, tag="project.create"):
    pass


class ProjectDeleted(ChangeEvent, frozen=True, tag="project.delete"):
    pass


class ProjectKeyRotated(ChangeEvent, frozen=True, tag="project.key_rotate"):
    pass


class SecretPut(ChangeEvent, frozen=True, tag="secret.put"):
    name: str
    version: int


class SecretDeleted(ChangeEvent, frozen=True, tag="secret.delete"):
    name: str
    version: int


class FrontendVarPut(ChangeEvent, frozen=True, tag="frontend_var.put"):
    name: str
    version: int


class FrontendVarDeleted(ChangeEvent, frozen=True, tag="frontend_var.delete"):
    name: str
    version: int


class CredentialPut(ChangeEvent, frozen=True, tag="credential.put"):
    name: str
    version: int


class CredentialDeleted(ChangeEvent, frozen=True, tag="credential.delete"):
    name: str
    version: int


class WorkflowPut(ChangeEvent, frozen=True, tag="workflow.put"):
    name: str
    version: int


class WorkflowDeleted(ChangeEvent, frozen=True, tag="workflow.delete"):
    name: str
    version: int


Event = (
    ProjectCreated
    | ProjectDeleted
    | ProjectKeyRotated
    | SecretPut
    | SecretDeleted
    | FrontendVarPut
    | FrontendVarDeleted
    | CredentialPut
    | CredentialDeleted
    | WorkflowPut
    | WorkflowDeleted
)


class UnknownEvent(msgspec.Struct, frozen=True, kw_only=True):
    """What an older reader makes of an event type it does not know: still a change to a project."""

    seq: int
    project: str
    revision: int
    type: str = ""
    committed_at: float = 0.0


_encoder: Final = msgspec.json.Encoder()
_decoder: Final = msgspec.json.Decoder(Event)
_fallback_decoder: Final = msgspec.json.Decoder(UnknownEvent)


def encode_event(event: Event) -> bytes:
    return _encoder.encode(event)


def decode_event(payload: bytes) -> Event | UnknownEvent:
    """Decode one stream entry; a type this build does not know still names its project and seq."""
    try:
        event: Event = _decoder.decode(payload)
    except msgspec.ValidationError:
        return _fallback_decoder.decode(payload)
    return event


SUMMARY_FIELDS: Final = ("type", "project", "name", "version", "revision")
_generic_decoder: Final = msgspec.json.Decoder(dict[str, object])


def summary_fields(payload: bytes) -> dict[str, str]:
    """The event's identifying fields, flat, for stream readers that do not decode the JSON
    (redis-cli, other languages): type, project, name, version, revision. Never a value."""
    data = _generic_decoder.decode(payload)
    return {key: str(data[key]) for key in SUMMARY_FIELDS if key in data}
