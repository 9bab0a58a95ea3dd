"""Change events: encoded on the service, decoded on the worker, never carrying a value."""

import msgspec
import pytest

from contract import events
from contract.events import SecretDeleted, SecretPut, UnknownEvent, decode_event, encode_event

pytestmark = pytest.mark.timeout(10)

EVENT_TYPES = [t for t in events.Event.__args__]  # type: ignore[attr-defined]


def test_a_secret_put_round_trips_with_its_type_tag() -> None:
    event = SecretPut(seq=7, project="shop", revision=3, name="API_KEY", version=2, committed_at=1_700_000_000.5)
    payload = encode_event(event)
    assert msgspec.json.decode(payload) == {
        "type": "secret.put",
        "seq": 7,
        "project": "shop",
        "revision": 3,
        "committed_at": 1_700_000_000.5,
        "name": "API_KEY",
        "version": 2,
    }
    assert decode_event(payload) == event


def test_a_secret_delete_round_trips() -> None:
    event = SecretDeleted(seq=8, project="shop", revision=4, name="API_KEY", version=2)
    decoded = decode_event(encode_event(event))
    assert isinstance(decoded, SecretDeleted) and decoded == event


@pytest.mark.parametrize("event_type", EVENT_TYPES, ids=lambda t: t.__struct_config__.tag)
def test_every_event_type_round_trips_and_has_no_value_field(event_type: type[msgspec.Struct]) -> None:
    fields = set(event_type.__struct_fields__)
    assert not fields & {"value", "plaintext", "ciphertext", "data_key", "secret"}
    kwargs: dict[str, object] = {"seq": 1, "project": "p", "revision": 1}
    if "name" in fields:
        kwargs |= {"name": "N", "version": 1}
    event = event_type(**kwargs)
    assert decode_event(encode_event(event)) == event  # type: ignore[arg-type]


def test_an_event_type_this_build_does_not_know_still_names_its_project() -> None:
    payload = b'{"type":"secret.rename","seq":9,"project":"shop","revision":5,"name":"A","to":"B"}'
    decoded = decode_event(payload)
    assert isinstance(decoded, UnknownEvent)
    assert (decoded.type, decoded.seq, decoded.project, decoded.revision) == ("secret.rename", 9, "shop", 5)


def test_an_older_event_without_newer_fields_and_a_newer_one_with_extra_fields_both_decode() -> None:
    old = decode_event(b'{"type":"secret.put","seq":1,"project":"p","revision":1,"name":"N","version":1}')
    new = decode_event(
        b'{"type":"secret.put","seq":1,"project":"p","revision":1,"name":"N","version":1,"actor":"x","extra":[1]}'
    )
    assert old == new == SecretPut(seq=1, project="p", revision=1, name="N", version=1)
    assert old.committed_at == 0.0


def test_garbage_is_a_decode_error_not_an_unknown_event() -> None:
    with pytest.raises(msgspec.DecodeError):
        decode_event(b"not json")
