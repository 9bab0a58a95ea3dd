"""Sealing: a value opens only under its project's key, in its own project, store and name."""

from datetime import datetime

import pytest
from cryptography.fernet import Fernet, InvalidToken

from contract.sealing import SealError, open_sealed, seal

pytestmark = pytest.mark.timeout(10)

VALUE = "sk_live_sealing_test_value"

# The Fernet specification's invalid tokens (github.com/fernet/spec, invalid.json), verbatim. Each
# must be refused when checked at `now` with a TTL of 60 s. One entry spells its keys capitalised.
SPEC_SECRET = "cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4="
SPEC_NOW = "1985-10-26T01:20:01-07:00"
FERNET_SPEC_INVALID = [
    {
        "desc": "incorrect mac",
        "token": "rn9hs9yS0GVWjk4hH822VIwQUWz-_WZWCLzsD7SgV2IAAAAAHcCesAABAgMEBQYHCAkKCwwNDg8tNtXKRlVimf3hMAhjOASy",
        "ttlns": 6e10,
        "now": "1985-10-26T01:20:01-07:00",
        "secret": SPEC_SECRET,
    },
    {
        "desc": "too short",
        "Token": "91GVdgz7jmWR6vJiViEA4u-LhVMhCSr87INSeFwwkYAAAAAAHcCesAABAgMEBQYHCAkKCw==",
        "TTLns": 6e10,
        "Now": "1985-10-26T01:20:01-07:00",
        "Secret": SPEC_SECRET,
    },
    {
        "desc": "invalid base64",
        "token": "%%%%%%%%%%%j-ztUarjDIfllJBmLiBMjfcmZesHVIhcAAAAAHcCesAABAgMEBQYHCAkKCwwNDg8tNtXKRlVimf3hMAhjOASy",
        "ttlns": 6e10,
        "now": "1985-10-26T01:20:01-07:00",
        "secret": SPEC_SECRET,
    },
    {
        "desc": "payload size not multiple of block size",
        "token": "r-pDJRzyfnW4rYfh-gZek3qA3lnFG8fGaf0qgmZlPL8AAAAAHcCesAABAgMEBQYHCAkKCwwNDg8tNtXKRlVimf3hMAhjOAQ=",
        "ttlns": 6e10,
        "now": "1985-10-26T01:20:01-07:00",
        "secret": SPEC_SECRET,
    },
    {
        "desc": "payload padding error",
        "token": "ApoqRxzlU8Z9-mPSV6ufXeIgKugRjI_-ugnnqqoCTjQAAAAAHcCesAABAgMEBQYHCAkKCwwNDg91rx5fbHkRnpZBxpOuEAjd",
        "ttlns": 6e10,
        "now": "1985-10-26T01:20:01-07:00",
        "secret": SPEC_SECRET,
    },
    {
        "desc": "far-future TS (unacceptable clock skew)",
        "token": "M0oOEQn9ZTWz212mKeX0qRyi7-wYxJFfsmDMhRazEeAAAAAAVigfvAABAgMEBQYHCAkKCwwNDg8tNtXKRlVimf3hMAhjOASy",
        "ttlns": 6e10,
        "now": "1985-10-26T01:20:01-07:00",
        "secret": SPEC_SECRET,
    },
    {
        "desc": "expired TTL",
        "token": "2woUxqnnpRAj-ztUarjDIfllJBmLiBMjfcmZesHVIhcAAAAAHcCesAABAgMEBQYHCAkKCwwNDg8tNtXKRlVimf3hMAhjOASy",
        "ttlns": 6e10,
        "now": "1985-10-26T01:21:01-07:00",
        "secret": SPEC_SECRET,
    },
    {
        "desc": "incorrect IV (causes padding error)",
        "token": "fe5sCHPyF13H837yvtc65xAlWfXXP3fEUX_jMiB74EwAAAAAHcCesHV0d3ZxcHNyfXx_fnl4e3otNtXKRlVimf3hMAhjOASy",
        "ttlns": 6e10,
        "now": "1985-10-26T01:20:01-07:00",
        "secret": SPEC_SECRET,
    },
]
# The spec's verify.json vector: the same key and clock accept this one, so the refusals above
# are the tokens' fault, not the test's.
SPEC_VALID_TOKEN = (
    "gAAAAAAdwJ6wAAECAwQFBgcICQoLDA0ODy021cpGVWKZ_eEwCGM4BLLF_5CV9dOPmrhuVUPgJobwOz7JcbmrR64jVmpU4IwqDA=="
)


def _spec_args(vector: dict[str, object]) -> tuple[Fernet, str, int, int]:
    spec = {key.lower(): value for key, value in vector.items()}
    now = int(datetime.fromisoformat(str(spec["now"])).timestamp())
    ttl = int(float(str(spec["ttlns"])) // 1_000_000_000)
    return Fernet(str(spec["secret"])), str(spec["token"]), ttl, now


@pytest.fixture
def fernet() -> Fernet:
    return Fernet(Fernet.generate_key())


def test_a_sealed_value_opens_in_its_own_place(fernet: Fernet) -> None:
    token = seal(fernet, "shop", "secret", "API_TOKEN", VALUE)
    assert open_sealed(fernet, token, "shop", "secret", "API_TOKEN") == VALUE
    assert open_sealed(fernet, token.decode(), "shop", "secret", "API_TOKEN") == VALUE


def test_the_token_does_not_show_the_value(fernet: Fernet) -> None:
    token = seal(fernet, "shop", "secret", "API_TOKEN", VALUE)
    assert VALUE.encode() not in token
    assert seal(fernet, "shop", "secret", "API_TOKEN", VALUE) != token  # a fresh IV each time


@pytest.mark.parametrize("value", ["x", "é😀 mixed ünïcode", "a" * 65_536, "line\nbreak\x00nul"])
def test_any_utf8_value_round_trips(fernet: Fernet, value: str) -> None:
    assert open_sealed(fernet, seal(fernet, "p", "secret", "N", value), "p", "secret", "N") == value


@pytest.mark.parametrize(
    ("project", "store", "name"),
    [
        ("other-project", "secret", "API_TOKEN"),  # copied to another project
        ("shop", "secret", "OTHER_NAME"),  # copied to another row
        ("shop", "credential", "API_TOKEN"),  # copied to another store
        ("shop", "secret", "API_TOKEN_2"),  # a name that merely starts like the original
        ("sho", "secret", "API_TOKEN"),  # a project id that is a prefix of the original
    ],
)
def test_a_token_copied_elsewhere_fails_with_a_clear_error_and_no_value(
    fernet: Fernet, project: str, store: str, name: str
) -> None:
    token = seal(fernet, "shop", "secret", "API_TOKEN", VALUE)
    with pytest.raises(SealError) as caught:
        open_sealed(fernet, token, project, store, name)
    assert caught.value.code == "binding_mismatch"
    assert "another record" in caught.value.message
    assert VALUE not in str(caught.value) and VALUE not in repr(caught.value)
    assert caught.value.__cause__ is None and caught.value.__context__ is None


def test_a_token_under_another_projects_key_does_not_decrypt(fernet: Fernet) -> None:
    token = seal(fernet, "shop", "secret", "API_TOKEN", VALUE)
    other_key = Fernet(Fernet.generate_key())
    with pytest.raises(SealError) as caught:
        open_sealed(other_key, token, "shop", "secret", "API_TOKEN")
    assert caught.value.code == "undecryptable"
    assert "API_TOKEN" in caught.value.message
    assert VALUE not in str(caught.value)


@pytest.mark.parametrize("garbage", ["", "not a token", b"\x00\xff", "gAAAAA"])
def test_garbage_is_undecryptable(fernet: Fernet, garbage: str | bytes) -> None:
    with pytest.raises(SealError) as caught:
        open_sealed(fernet, garbage, "shop", "secret", "N")
    assert caught.value.code == "undecryptable"


def test_the_spec_key_and_clock_accept_the_specs_valid_token() -> None:
    fernet, _, ttl, now = _spec_args(FERNET_SPEC_INVALID[0])
    assert fernet.decrypt_at_time(SPEC_VALID_TOKEN, ttl, now) == b"hello"


@pytest.mark.parametrize("vector", FERNET_SPEC_INVALID, ids=[str(v["desc"]) for v in FERNET_SPEC_INVALID])
def test_the_fernet_spec_invalid_vectors_are_rejected(vector: dict[str, object]) -> None:
    fernet, token, ttl, now = _spec_args(vector)
    with pytest.raises(InvalidToken):
        fernet.decrypt_at_time(token, ttl, now)
    with pytest.raises(SealError) as caught:
        open_sealed(fernet, token, "p", "secret", "N", ttl_at=(ttl, now))
    assert caught.value.code == "undecryptable"  # refused by Fernet itself, before any binding check
