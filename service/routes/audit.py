"""GET /api/projects/{p}/audit: the project's audit log, newest first, paged and filtered. Never a value.

Query: `limit` (1-500, default 100); `before` (a `seq`: the previous page's `next_before`); `name`
(a secret, credential, var or workflow name); `actor` (a kind such as `dashboard` or `engine`, a token
id, or `kind:id`); `since` / `until` (RFC 3339; since inclusive, until exclusive).
"""

from collections.abc import Mapping
from typing import Annotated, Final

import msgspec
from aiohttp import web

from service.clock import parse_rfc3339
from service.errors import InvalidField
from service.openapi import Auth, describe
from service.responses import json_response
from service.state import AUTH, DISPATCH, READER
from service.store.audit import AuditEntry, AuditFilter, list_entries
from service.store.projects import project_wrapped_key

routes = web.RouteTableDef()

DEFAULT_PAGE: Final = 100
MAX_PAGE: Final = 500
TEXT_MAX: Final = 200
_TEXT: Final = Annotated[str, msgspec.Meta(min_length=1, max_length=TEXT_MAX)]
_TIME: Final = Annotated[str, msgspec.Meta(extra_json_schema={"format": "date-time"})]  # RFC 3339, with an offset


class AuditPage(msgspec.Struct, frozen=True, kw_only=True):
    entries: list[AuditEntry]
    next_before: int | None  # pass as `before` for the next (older) page; null on the last page


def _whole(raw: str | None, field: str, low: int, high: int) -> int | None:
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:  # not "²"
        raise InvalidField(f"{field} must be a whole number from {low} to {high}", code=f"invalid_{field}")
    return int(raw)


def _text(raw: str | None, field: str) -> str | None:
    if raw is not None and not 0 < len(raw) <= TEXT_MAX:
        raise InvalidField(f"{field} must be 1 to {TEXT_MAX} characters", code=f"invalid_{field}")
    return raw


def _time(raw: str | None, field: str) -> str | None:
    if raw is None:
        return None
    try:
        return parse_rfc3339(raw)
    except ValueError:
        raise InvalidField(
            f"{field} must be an RFC 3339 time with an offset, as in 2024-05-01T12:00:00Z", code=f"invalid_{field}"
        ) from None


def _filter(query: Mapping[str, str]) -> AuditFilter:
    return AuditFilter(
        limit=_whole(query.get("limit"), "limit", 1, MAX_PAGE) or DEFAULT_PAGE,
        before=_whole(query.get("before"), "before", 1, 2**63 - 1),
        name=_text(query.get("name"), "name"),
        actor=_text(query.get("actor"), "actor"),
        since=_time(query.get("since"), "since"),
        until=_time(query.get("until"), "until"),
    )


@routes.get("/api/projects/{project}/audit")
@describe(
    "The project's audit log, newest first: changes (who, what, version), engine reads and refused requests",
    auth=Auth.MANAGER,
    responses={200: AuditPage},
    errors=(422,),
    query={
        "limit": Annotated[int, msgspec.Meta(ge=1, le=MAX_PAGE)],
        "before": Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)],
        "name": _TEXT,
        "actor": _TEXT,
        "since": _TIME,
        "until": _TIME,
    },
)
async def get_audit(request: web.Request) -> web.Response:
    """The admin token or the project's dashboard token. Entries are append-only and carry names,
    versions, token ids, execution and node ids, never a value."""
    project_id = request.match_info["project"]
    await request.app[AUTH].require_manager(request, project_id)
    await request.app[DISPATCH].settled(project_id)  # reads of executions already answered are audited
    query = _filter(request.query)
    await project_wrapped_key(request.app[READER], project_id)  # the admin's 404 for an unknown project
    entries = await list_entries(request.app[READER], project_id, query)
    next_before = entries[-1].seq if len(entries) == query.limit else None
    return json_response(AuditPage(entries=entries, next_before=next_before), headers={"Cache-Control": "no-store"})
