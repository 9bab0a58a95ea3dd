"""Refused requests on a project's routes go into that project's audit log, with what is known.

A request to `/api/projects/{p}/...` or `/api/engine/{p}/...` answered with a refusal (`REFUSED`: 401
no or unknown token, 403 wrong scope, 404 another project's token or an unknown record, 412 version
mismatch, 422 invalid field, and 400/413/415 for a malformed body) is recorded. Not 409: a worker's
claim or result after an execution finished is the executions protocol at work, not a refusal.
Recorded: the actor if a token resolved (service.actor), else `anonymous`; the HTTP method as `op`;
the store from the route; the name only if it is a well-formed name (a malformed one could be a
value pasted into a URL); the status and the error code. Never a value, never a token.

Refusals come from outside and cost a write each, so each project's are bounded: a token bucket of
`BURST` entries refilled at `PER_SECOND`. What the bound drops is counted, and the next entry that
is written says how many went before it (`suppressed`). Nothing is written for a project that does
not exist.
"""

import logging
import re
import time
from collections import OrderedDict
from typing import Final

import msgspec
from aiohttp import web
from aiohttp.typedefs import Middleware

from contract.names import is_valid_name
from service.actor import ANONYMOUS, CURRENT
from service.errors import ApiError, ErrorBody, Handler
from service.state import READER, WRITER
from service.store.audit import NewEntry
from service.store.db import fetch_one
from service.store.writer import Operation, Transaction
from service.workflow_validation import WORKFLOW_NAME_MAX, WORKFLOW_NAME_RE

log = logging.getLogger("service.audit")

REFUSED: Final = frozenset({400, 401, 403, 404, 412, 413, 415, 422})
BURST: Final = 60
PER_SECOND: Final = 1.0
MAX_PROJECTS: Final = 10_000  # buckets remembered; the least recently refused project is forgotten first
_STORES: Final = {
    "secrets": "secret",
    "credentials": "credential",
    "frontend-vars": "frontend_var",
    "frontend-vars.env": "frontend_var",
    "workflows": "workflow",
    "executions": "execution",
    "audit": "audit",
    "rotate-key": "project",
}
_error_body: Final = msgspec.json.Decoder(ErrorBody)
_EXECUTION_ID: Final = re.compile(r"ex_[0-9a-f]{12,40}")


class RefusalLimiter:
    """Per-project token buckets: (tokens left, when last refilled, refusals dropped since the last entry)."""

    def __init__(self, burst: int = BURST, per_second: float = PER_SECOND) -> None:
        self._burst, self._rate = burst, per_second
        self._buckets: OrderedDict[str, tuple[float, float, int]] = OrderedDict()

    def admit(self, project: str, now: float) -> int | None:
        """None: drop this refusal. Otherwise write it, saying how many were dropped before it."""
        tokens, then, dropped = self._buckets.pop(project, (float(self._burst), now, 0))
        tokens = min(float(self._burst), tokens + (now - then) * self._rate)
        if tokens < 1:
            self._remember(project, (tokens, now, dropped + 1))
            return None
        self._remember(project, (tokens - 1, now, 0))
        return dropped

    def _remember(self, project: str, bucket: tuple[float, float, int]) -> None:
        self._buckets[project] = bucket
        while len(self._buckets) > MAX_PROJECTS:
            self._buckets.popitem(last=False)


def refusals_middleware(limiter: RefusalLimiter) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        token = CURRENT.set(None)  # the actor of this request only
        try:
            response = await handler(request)
            project = _project(request)
            if project is not None and response.status in REFUSED and await _exists(request, project):
                dropped = limiter.admit(project, time.monotonic())
                if dropped is not None:
                    await _record(request, project, response, dropped)
            return response
        finally:
            CURRENT.reset(token)

    return middleware


def _project(request: web.Request) -> str | None:
    if not request.path.startswith(("/api/projects/", "/api/engine/")):
        return None
    return request.match_info.get("project")


async def _exists(request: web.Request, project: str) -> bool:
    """Made-up project ids cost a read, not a write (nor a bucket)."""
    return await fetch_one(request.app[READER], "SELECT 1 FROM projects WHERE id = ?", (project,)) is not None


def _store(request: web.Request) -> str:
    resource = request.match_info.route.resource
    parts = resource.canonical.split("/") if resource is not None else []
    if "engine" in parts[:3]:
        return "engine"
    after = parts[parts.index("{project}") + 1 :] if "{project}" in parts else []
    return _STORES.get(after[0], after[0]) if after else "project"


def _name(request: web.Request) -> str | None:
    name = request.match_info.get("name")
    if name is None:
        return None
    if is_valid_name(name) or (len(name) <= WORKFLOW_NAME_MAX and WORKFLOW_NAME_RE.fullmatch(name)):
        return name
    return None


def _execution_id(request: web.Request) -> str | None:
    found = request.match_info.get("id")
    return found if found is not None and _EXECUTION_ID.fullmatch(found) else None


def _code(response: web.StreamResponse) -> str | None:
    body = response.body if isinstance(response, web.Response) else None
    if not isinstance(body, bytes):
        return None
    try:
        return _error_body.decode(body).error.code
    except msgspec.MsgspecError:
        return None


async def _record(request: web.Request, project: str, response: web.StreamResponse, dropped: int) -> None:
    entry = NewEntry(
        project=project,
        action="refused",
        actor=CURRENT.get() or ANONYMOUS,
        store=_store(request),
        op=request.method,
        name=_name(request),
        execution_id=_execution_id(request),
        status=response.status,
        code=_code(response),
        suppressed=dropped or None,
    )
    try:
        await request.app[WRITER].submit(_write(entry), durable=False)
    except ApiError as exc:  # the database is busy: the refusal still gets its answer
        log.warning("a refused request could not be audited: %s", exc.error_code, extra={"project": project})


def _write(entry: NewEntry) -> Operation[None]:
    async def operation(tx: Transaction) -> None:
        tx.record(entry)

    return operation
