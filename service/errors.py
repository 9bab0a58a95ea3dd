"""Domain errors under one base class, and the one middleware that turns them into JSON.

Every error the API returns has the shape {"error": {"code": "<snake_case>", "message": "..."}}.
Messages name fields and records, never a value.
"""

import logging
from collections.abc import Awaitable, Callable
from typing import ClassVar

import msgspec
from aiohttp import web

from service.responses import json_response

log = logging.getLogger("service.errors")


class ApiError(Exception):
    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.error_code = code or self.code


class MalformedBody(ApiError):
    status, code = 400, "malformed_json"


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"


class Forbidden(ApiError):
    status, code = 403, "forbidden"


class NotFound(ApiError):
    status, code = 404, "not_found"


class Conflict(ApiError):
    status, code = 409, "conflict"


class PreconditionFailed(ApiError):
    status, code = 412, "version_mismatch"


class PayloadTooLarge(ApiError):
    status, code = 413, "body_too_large"


class UnsupportedMediaType(ApiError):
    status, code = 415, "unsupported_media_type"


class InvalidField(ApiError):
    status, code = 422, "invalid_field"


class InternalError(ApiError):
    status, code = 500, "internal_error"


class ServiceUnavailable(ApiError):
    status, code = 503, "unavailable"


class ErrorDetail(msgspec.Struct, frozen=True):
    code: str  # snake_case, stable: what a program matches on
    message: str  # for a human; names fields and records, never a value


class ErrorBody(msgspec.Struct, frozen=True):
    """The body of every error the API returns."""

    error: ErrorDetail


def error_response(status: int, code: str, message: str) -> web.Response:
    return json_response(ErrorBody(ErrorDetail(code, message)), status=status)


_HTTP_CODES = {
    404: ("not_found", "no such route"),
    405: ("method_not_allowed", "this route does not accept that method"),
    413: ("body_too_large", "the request body is too large"),
}


def _from_http_exception(exc: web.HTTPException) -> web.Response:
    code, message = _HTTP_CODES.get(exc.status, ("http_error", exc.reason))
    response = error_response(exc.status, code, message)
    if "Allow" in exc.headers:
        response.headers["Allow"] = exc.headers["Allow"]
    return response


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.error_code, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _from_http_exception(exc)
    except Exception:
        # The traceback is logged, the client sees no internals; no handler puts a value in an exception.
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal_error", "an internal error occurred; it has been logged")
