"""JSON responses encoded by msgspec (one encoder, built once)."""

from typing import Any, Final

import msgspec
from aiohttp import web

_encoder: Final = msgspec.json.Encoder()


def json_response(body: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=_encoder.encode(body), status=status, content_type="application/json", headers=headers)
