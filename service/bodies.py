"""Request bodies: JSON only, size-limited, decoded straight into msgspec types."""

from typing import TypeVar

import msgspec
from aiohttp import web

from service.errors import InvalidField, MalformedBody, PayloadTooLarge, UnsupportedMediaType

T = TypeVar("T")


async def read_json(request: web.Request, body_type: type[T]) -> T:
    if request.content_type != "application/json":
        raise UnsupportedMediaType("send the body as JSON with 'Content-Type: application/json'")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(f"the body is larger than {request.client_max_size} bytes") from None
    try:
        return msgspec.json.decode(raw, type=body_type)
    except msgspec.ValidationError as exc:
        raise InvalidField(f"invalid body: {exc}") from None
    except msgspec.DecodeError:
        raise MalformedBody("the body is not valid JSON") from None
