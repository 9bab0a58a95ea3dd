"""Engine deltas: a change's effect on the engine snapshot, left in Redis beside its event. They
round-trip, evolve like events (new fields with defaults), never show a ciphertext in a repr, and
live under the configured prefix."""

import msgspec
import pytest

from contract.engine import EngineDelta, EngineSecret, delta_decoder, delta_encoder
from contract.streams import Streams

pytestmark = pytest.mark.timeout(10)

CIPHERTEXT = "gAAAAABm-delta-ciphertext"
PREVIOUS = "gAAAAABm-delta-previous"


def test_a_delta_round_trips_with_its_overlap() -> None:
    secret = EngineSecret(
        name="SIGNING", version=3, ciphertext=CIPHERTEXT, previous_ciphertext=PREVIOUS, previous_valid_until=1.5e9
    )
    delta = EngineDelta(project="shop", revision=9, secret=secret)
    assert delta_decoder.decode(delta_encoder.encode(delta)) == delta


def test_a_delta_leaves_out_what_it_does_not_carry() -> None:
    delta = EngineDelta(project="shop", revision=9, secret=EngineSecret(name="K", version=1, ciphertext=CIPHERTEXT))
    assert msgspec.json.decode(delta_encoder.encode(delta)) == {
        "project": "shop",
        "revision": 9,
        "secret": {"name": "K", "version": 1, "ciphertext": CIPHERTEXT},
    }


def test_older_and_newer_deltas_still_decode() -> None:
    """A field this build does not know is ignored; one a newer build left out gets its default."""
    secret = b'"secret":{"name":"K","version":1,"ciphertext":"c"}'
    newer = b'{"project":"shop","revision":2,"credential":{"name":"C"},' + secret + b"}"
    assert delta_decoder.decode(newer).secret == EngineSecret(name="K", version=1, ciphertext="c")
    assert delta_decoder.decode(b'{"project":"shop","revision":2}').secret is None


def test_a_malformed_delta_is_refused() -> None:
    with pytest.raises(msgspec.DecodeError):
        delta_decoder.decode(b'{"project":"shop","revision":"two"}')


def test_the_repr_names_the_change_but_never_its_ciphertexts() -> None:
    secret = EngineSecret(name="K", version=4, ciphertext=CIPHERTEXT, previous_ciphertext=PREVIOUS)
    shown = repr(EngineDelta(project="shop", revision=7, secret=secret))
    assert CIPHERTEXT not in shown and PREVIOUS not in shown
    assert "'shop'" in shown and "7" in shown and "'K'" in shown and "4" in shown
    assert CIPHERTEXT not in repr(EngineDelta(project="shop", revision=7))


def test_delta_keys_sit_under_the_prefix_by_origin_and_seq() -> None:
    streams = Streams("tenant-a")
    assert streams.engine_delta("db-1", 42) == "tenant-a:engine-delta:db-1:42"
    assert streams.engine_delta("db-1", 42) != streams.engine_delta("db-2", 42)
    assert Streams.around(streams.events) == streams
    assert Streams.around("custom").engine_delta("o", 1).startswith("custom:")
