"""The credential type table: validation, the sealed plaintext, and the header the engine sends."""

import base64
import re

import pytest
import quickjs

from contract.credential_types import (
    CREDENTIAL_TYPES,
    BasicAuth,
    BearerAuth,
    CredentialFieldsError,
    authorization_header,
    check_fields,
    credential_type,
    decode_fields,
    encode_fields,
)

SAMPLES = [
    "sk_test_4eC39HqLyjWDarjtT1zdp7dc",
    "sk_live_51HxQ2eKZvKYlo2C0aBcDeFg",
    "pk_live_51HxQ2eKZvKYlo2C0aBcDeFg",
    "sk_test_",
    "sk_test_abc\n",
    "xoxb-17653672481-pdFZKVeTuE8sk7oOcBrzbqgy",
    "xoxp-17653672481-pdFZKVeTuE8sk7oOcBrzbqgy",
    "re_123_abc",
    "re-123",
    "token with space",
    "tab\tinside",
    "ünïcode",
    "user:name",
    "p@ss: wörd",
    "line\r\nbreak",
    "del\x7f",
    "",
]  # no NUL: the quickjs binding passes strings as C strings, so it would cut the sample short


def test_every_auth_scheme_names_fields_of_its_type() -> None:
    for kind in CREDENTIAL_TYPES.values():
        auth = kind.auth
        named = [auth.field] if isinstance(auth, BearerAuth) else [auth.username_field, auth.password_field]
        assert set(named) <= set(kind.field_names), kind.type
        assert all(f.pattern.startswith("^") and f.pattern.endswith("$") for f in kind.fields)


def test_the_patterns_mean_the_same_in_the_browser() -> None:
    """The page checks a field with `new RegExp(pattern, "u")`, the service with `re.fullmatch`: same answers."""
    js = quickjs.Function("test", 'function test(pattern, value) { return new RegExp(pattern, "u").test(value); }')
    for kind in CREDENTIAL_TYPES.values():
        for field in kind.fields:
            for sample in SAMPLES:
                python = re.fullmatch(field.pattern, sample) is not None
                assert js(field.pattern, sample) == python, (kind.type, field.name, sample)


@pytest.mark.parametrize(
    ("kind", "fields", "header"),
    [
        ("stripe", {"secret_key": "sk_test_abc"}, "Bearer sk_test_abc"),
        ("openai", {"api_key": "sk-proj-x"}, "Bearer sk-proj-x"),
        ("slack", {"bot_token": "xoxb-1-a"}, "Bearer xoxb-1-a"),
        ("resend", {"api_key": "re_x"}, "Bearer re_x"),
        ("http_bearer", {"token": "t0k"}, "Bearer t0k"),
        (
            "http_basic",
            {"username": "Aladdin", "password": "open sesame"},
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==",  # RFC 7617's example
        ),
    ],
)
def test_the_authorization_header(kind: str, fields: dict[str, str], header: str) -> None:
    credential = credential_type(kind)
    assert check_fields(credential, fields) == fields
    assert authorization_header(credential, fields) == header


def test_basic_auth_is_utf8() -> None:
    header = authorization_header(credential_type("http_basic"), {"username": "ü", "password": "ß:x"})
    assert base64.b64decode(header.removeprefix("Basic ")).decode("utf-8") == "ü:ß:x"
    assert isinstance(credential_type("http_basic").auth, BasicAuth)


def test_the_sealed_plaintext_round_trips_in_field_order() -> None:
    kind = credential_type("http_basic")
    plaintext = encode_fields(kind, {"password": 'p"w\\ü', "username": "u"})
    assert plaintext.index("username") < plaintext.index("password")
    assert decode_fields(plaintext) == {"username": "u", "password": 'p"w\\ü'}


@pytest.mark.parametrize(
    ("kind", "fields", "code"),
    [
        ("stripe", {}, "missing_field"),
        ("stripe", {"secret_key": "sk_test_a", "token": "x"}, "unknown_field"),
        ("stripe", {"secret_key": "rk_test_a"}, "invalid_field_value"),
        ("stripe", {"secret_key": 7}, "invalid_field_value"),
        ("http_bearer", {"token": "x" * 65_537}, "value_too_large"),
        ("http_bearer", {"token": "\ud800"}, "invalid_field_value"),
    ],
)
def test_refusals(kind: str, fields: dict[str, object], code: str) -> None:
    with pytest.raises(CredentialFieldsError) as caught:
        check_fields(credential_type(kind), fields)
    assert caught.value.code == code
    for value in fields.values():
        if isinstance(value, str) and len(value) > 3:
            assert value not in caught.value.message


def test_an_unknown_type() -> None:
    with pytest.raises(CredentialFieldsError) as caught:
        credential_type("github")
    assert caught.value.code == "unknown_credential_type"
    assert "stripe" in caught.value.message
