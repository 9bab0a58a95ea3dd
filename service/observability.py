"""What the service records about each request: an id, a metric sample and an access-log line.

The request id comes from the caller's `X-Request-Id` when it is a short token, else it is made
here; it goes back in the response's `X-Request-Id` and onto every log line written while the
request is handled (contract.logs.REQUEST_ID). Requests are labelled by the route's canonical path
(`unmatched` when no route matched), never by the path as sent, and the access log carries the
path without its query string and without any part that is not a plain id or name (see logged_path).
"""

import itertools
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final

from aiohttp import web

from contract.logs import REQUEST_ID
from service.routes.hooks import EXECUTION_HEADER
from service.state import METRICS, RELAY, WRITER

REQUEST_ID_HEADER: Final = "X-Request-Id"
UNMATCHED: Final = "unmatched"
CLIENT_GONE: Final = "499"  # the client went away before the answer (nginx's code for it)
_SANE_ID: Final = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_PLAIN_PART: Final = re.compile(r"[A-Za-z0-9._-]{1,128}")  # ids and names (secrets, workflows, executions, files)
_PLAIN_PATH: Final = re.compile(r"[A-Za-z0-9._/-]{1,512}")
# Any other method a client invents is counted as OTHER, so labels stay a bounded set.
KNOWN_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

# Request ids need to be unique, not secret: a random prefix per process and a counter, with no
# system call per request (reading the OS's randomness costs more than the access log line).
_ID_PREFIX: Final = secrets.token_hex(4)
_ID_COUNTER: Final = itertools.count(1)

access_log = logging.getLogger("service.access")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def request_id(request: web.Request) -> str:
    sent = request.headers.get(REQUEST_ID_HEADER, "")
    return sent if _SANE_ID.fullmatch(sent) else f"{_ID_PREFIX}{next(_ID_COUNTER) % 2**32:08x}"


def route_label(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED


@web.middleware
async def observe_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    rid = request_id(request)
    token = REQUEST_ID.set(rid)
    started = time.perf_counter()
    status, response = CLIENT_GONE, None
    try:
        response = await handler(request)
        status = str(response.status)
        if not response.prepared:
            response.headers[REQUEST_ID_HEADER] = rid
        return response
    except web.HTTPException as exc:  # what the error middleware lets through: redirects and the like
        status = str(exc.status)
        exc.headers[REQUEST_ID_HEADER] = rid
        raise
    finally:
        _record(request, status, time.perf_counter() - started, response)
        REQUEST_ID.reset(token)


def _record(request: web.Request, status: str, seconds: float, response: web.StreamResponse | None) -> None:
    route, milliseconds = route_label(request), round(seconds * 1000, 3)
    method = request.method if request.method in KNOWN_METHODS else "OTHER"
    request.app[METRICS].observe_request(method, route, status, seconds)
    if not access_log.isEnabledFor(logging.INFO):
        return
    fields: dict[str, object] = {"method": request.method, "route": route, "status": int(status)}
    fields["duration_ms"] = milliseconds
    execution = response.headers.get(EXECUTION_HEADER) if response is not None else None
    if execution:
        fields["execution_id"] = execution
    access_log.info("%s %s %s %.1f ms", request.method, logged_path(request), status, milliseconds, extra=fields)


def logged_path(request: web.Request) -> str:
    """The path as sent, except a part that is not a plain id or name: a value pasted into the URL where a
    name goes (refused with a 4xx) must not reach the log, so such a path parameter is shown as `{name}`."""
    resource = request.match_info.route.resource
    if resource is None:
        return request.path if _PLAIN_PATH.fullmatch(request.path) else f"({UNMATCHED})"
    path = resource.canonical
    for name, value in request.match_info.items():
        if _PLAIN_PART.fullmatch(value):
            path = path.replace("{" + name + "}", value, 1)
    return path


async def metrics_ctx(app: web.Application) -> AsyncIterator[None]:
    """Wires the writer and the relay to the app's metrics (after the contexts that start them)."""
    metrics, writer = app[METRICS], app[WRITER]
    writer.on_batch = metrics.observe_batch
    metrics.watch_outbox(app[RELAY])
    yield
    writer.on_batch = None
