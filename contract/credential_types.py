"""The typed credentials: each type's fields, their validation, and how the engine authenticates with it.

One table read by both sides. The service validates a credential against it when it is saved and
serves it as `GET /api/credential-types`; the worker reads a type's `auth` to build the header an
`http_request` node with `"credential": NAME` sends (`authorization_header`).

A credential is sealed (store "credential") as the JSON object of its fields (`encode_fields`),
and opens back with `decode_fields`. Every field value is non-empty text without control
characters, so none can break out of an HTTP header. No error here ever contains a value.
"""

import base64
import re
from collections.abc import Mapping
from typing import Final

import msgspec

from contract.names import VALUE_MAX_BYTES

STORE: Final = "credential"  # the store name sealed into each credential's binding


class CredentialField(msgspec.Struct, frozen=True, kw_only=True):
    """One field of a type. `pattern` is anchored (^...$) and valid in Python and JavaScript alike;
    `secret` fields are typed into password inputs and fingerprinted for the frontend guardrail."""

    name: str
    label: str
    secret: bool = True
    pattern: str
    hint: str


class BearerAuth(msgspec.Struct, frozen=True, kw_only=True, tag_field="scheme", tag="bearer"):
    """`Authorization: Bearer <the value of field>`."""

    field: str


class BasicAuth(msgspec.Struct, frozen=True, kw_only=True, tag_field="scheme", tag="basic"):
    """`Authorization: Basic base64(<username_field>:<password_field>)` (RFC 7617, UTF-8)."""

    username_field: str
    password_field: str


AuthScheme = BearerAuth | BasicAuth


class CredentialType(msgspec.Struct, frozen=True, kw_only=True):
    type: str
    label: str
    description: str
    fields: tuple[CredentialField, ...]
    auth: AuthScheme

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    @property
    def secret_fields(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields if f.secret)


# Printable ASCII without spaces: what an opaque API token may contain.
_PRINTABLE = r"[\x21-\x7E]+"
_PRINTABLE_HINT = "printable ASCII characters, no spaces"


def _token_field(
    name: str, label: str, pattern: str = f"^{_PRINTABLE}$", hint: str = _PRINTABLE_HINT
) -> CredentialField:
    return CredentialField(name=name, label=label, pattern=pattern, hint=hint)


CREDENTIAL_TYPES: Final[Mapping[str, CredentialType]] = {
    t.type: t
    for t in (
        CredentialType(
            type="stripe",
            label="Stripe",
            description="A Stripe secret key, for the Stripe API.",
            fields=(
                _token_field(
                    "secret_key",
                    "Secret key",
                    r"^sk_(?:test|live)_[0-9A-Za-z_]+$",
                    "starts with sk_test_ or sk_live_, then letters, digits and _",
                ),
            ),
            auth=BearerAuth(field="secret_key"),
        ),
        CredentialType(
            type="openai",
            label="OpenAI",
            description="An OpenAI API key.",
            fields=(_token_field("api_key", "API key"),),
            auth=BearerAuth(field="api_key"),
        ),
        CredentialType(
            type="slack",
            label="Slack",
            description="A Slack bot token, for the Slack Web API.",
            fields=(
                _token_field(
                    "bot_token", "Bot token", r"^xoxb-[0-9A-Za-z-]+$", "starts with xoxb-, then letters, digits and -"
                ),
            ),
            auth=BearerAuth(field="bot_token"),
        ),
        CredentialType(
            type="resend",
            label="Resend",
            description="A Resend API key.",
            fields=(
                _token_field(
                    "api_key", "API key", r"^re_[0-9A-Za-z_]+$", "starts with re_, then letters, digits and _"
                ),
            ),
            auth=BearerAuth(field="api_key"),
        ),
        CredentialType(
            type="http_bearer",
            label="HTTP Bearer token",
            description="Any HTTP API that takes a bearer token (Authorization: Bearer).",
            fields=(_token_field("token", "Token"),),
            auth=BearerAuth(field="token"),
        ),
        CredentialType(
            type="http_basic",
            label="HTTP Basic auth",
            description="Any HTTP API that takes a username and a password (Authorization: Basic).",
            fields=(
                CredentialField(
                    name="username",
                    label="Username",
                    secret=False,
                    pattern=r"^[^:\x00-\x1F\x7F]+$",
                    hint="no colon and no control characters",
                ),
                CredentialField(
                    name="password", label="Password", pattern=r"^[^\x00-\x1F\x7F]+$", hint="no control characters"
                ),
            ),
            auth=BasicAuth(username_field="username", password_field="password"),  # noqa: S106 - field names
        ),
    )
}

_ALL_FIELD_NAMES: Final = frozenset(f.name for t in CREDENTIAL_TYPES.values() for f in t.fields)
_COMPILED: Final = {(t.type, f.name): re.compile(f.pattern) for t in CREDENTIAL_TYPES.values() for f in t.fields}


class CredentialFieldsError(Exception):
    """A credential's fields do not fit its type. `code` is the API's error code; never carries a value."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def credential_type(name: str) -> CredentialType:
    found = CREDENTIAL_TYPES.get(name)
    if found is None:
        known = ", ".join(CREDENTIAL_TYPES)
        raise CredentialFieldsError("unknown_credential_type", f"type must be one of: {known}")
    return found


def check_fields(kind: CredentialType, fields: Mapping[str, object]) -> dict[str, str]:
    """The fields, checked: raises CredentialFieldsError for a missing, unknown, non-text, empty, oversized
    or malformed field. Messages start with `fields.<name>:` so a form can place them beside the field.
    """
    unknown = sorted(set(fields) - set(kind.field_names))
    if unknown:
        # Only a field name of some type is named back: an unknown key may be a value pasted in the wrong place.
        shown = f"fields.{unknown[0]}" if unknown[0] in _ALL_FIELD_NAMES else "fields"
        raise CredentialFieldsError(
            "unknown_field",
            f"{shown}: a {kind.type} credential has no such field; its fields are {', '.join(kind.field_names)}",
        )
    checked: dict[str, str] = {}
    for spec in kind.fields:
        value = fields.get(spec.name)
        if value is None:
            raise CredentialFieldsError("missing_field", f"fields.{spec.name}: required for a {kind.type} credential")
        if not isinstance(value, str):
            raise CredentialFieldsError("invalid_field_value", f"fields.{spec.name}: must be a string")
        _check_value(kind, spec, value)
        checked[spec.name] = value
    return checked


def _check_value(kind: CredentialType, spec: CredentialField, value: str) -> None:
    where = f"fields.{spec.name}"
    if not value:
        raise CredentialFieldsError("invalid_field_value", f"{where}: must not be empty")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise CredentialFieldsError("invalid_field_value", f"{where}: must be valid UTF-8 text") from None
    if size > VALUE_MAX_BYTES:
        raise CredentialFieldsError("value_too_large", f"{where}: is {size} bytes; the limit is {VALUE_MAX_BYTES}")
    if _COMPILED[(kind.type, spec.name)].fullmatch(value) is None:
        spaces = " (it contains whitespace: check the copy)" if any(c.isspace() for c in value) else ""
        raise CredentialFieldsError(
            "invalid_field_value", f"{where}: does not match the expected format: {spec.hint}{spaces}"
        )


_fields_decoder: Final = msgspec.json.Decoder(dict[str, str])


def encode_fields(kind: CredentialType, fields: Mapping[str, str]) -> str:
    """The sealed plaintext: the JSON object of the fields, in the type's field order."""
    return msgspec.json.encode({name: fields[name] for name in kind.field_names}).decode()


def decode_fields(plaintext: str) -> dict[str, str]:
    return _fields_decoder.decode(plaintext)


def authorization_header(kind: CredentialType, fields: Mapping[str, str]) -> str:
    """The value of the `Authorization` header the engine sends for a credential of this type."""
    auth = kind.auth
    if isinstance(auth, BearerAuth):
        return f"Bearer {fields[auth.field]}"
    pair = f"{fields[auth.username_field]}:{fields[auth.password_field]}".encode()
    return f"Basic {base64.b64encode(pair).decode('ascii')}"
