"""Field rules of the contract, raised as 422s that name the field and never echo a value."""

import re
import secrets as random

from aiohttp import web

from contract.names import (
    PROJECT_NAME_MAX,
    SECRET_NAME_MAX,
    VALUE_MAX_BYTES,
    is_valid_name,
    is_valid_project_id,
)
from service.errors import ApiError, InvalidField


def valid_name(name: str) -> str:
    if not is_valid_name(name):
        raise InvalidField(
            f"name must match ^[A-Za-z_][A-Za-z0-9_]*$ and be at most {SECRET_NAME_MAX} characters",
            code="invalid_name",
        )
    return name


def valid_value(value: str) -> str:
    """Non-empty UTF-8, at most VALUE_MAX_BYTES bytes. The message never contains the value."""
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidField("value must be valid UTF-8 text", code="invalid_value") from None
    if size == 0:
        raise InvalidField("value must not be empty", code="invalid_value")
    if size > VALUE_MAX_BYTES:
        raise InvalidField(f"value is {size} bytes; the limit is {VALUE_MAX_BYTES} bytes", code="value_too_large")
    return value


def valid_project_id(project_id: str) -> str:
    if not is_valid_project_id(project_id):
        raise InvalidField(
            "id must match ^[a-z0-9][a-z0-9-]{0,62}$ (lowercase letters, digits and dashes)",
            code="invalid_project_id",
        )
    return project_id


def valid_project_name(name: str) -> str:
    if not name.strip() or len(name) > PROJECT_NAME_MAX:
        raise InvalidField(f"name must be 1 to {PROJECT_NAME_MAX} characters", code="invalid_project_name")
    return name


def project_id_from_name(name: str) -> str:
    """A readable id for a project created without one: its slugged name and a random suffix."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:48].strip("-")
    return f"{slug or 'project'}-{random.token_hex(3)}"


def if_match_version(request: web.Request) -> int | None:
    """`If-Match: 3` or `If-Match: "3"`; absent means no precondition."""
    raw = request.headers.get("If-Match")
    if raw is None:
        return None
    text = raw.strip().removeprefix("W/").strip('"')
    if not (text.isascii() and text.isdigit()):  # "²" is a digit to isdigit(), not to int()
        raise ApiError("If-Match must be a secret version number, as in the ETag", code="invalid_if_match")
    return int(text)
