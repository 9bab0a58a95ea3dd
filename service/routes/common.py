"""What every project-store route module does the same way: authorize the dashboard for the
project in the path, and answer a write with the record's version as its ETag."""

from typing import Any

from aiohttp import web

from service.auth import Scope
from service.responses import json_response
from service.state import AUTH, DISPATCH


async def dashboard_project(request: web.Request) -> str:
    """The path's project, once the caller is its dashboard (token or session cookie). A read first
    waits for results already reported (a webhook answered) to be written, so it shows them."""
    project_id = request.match_info["project"]
    await request.app[AUTH].require(request, Scope.DASHBOARD, project_id)
    if request.method in ("GET", "HEAD"):
        await request.app[DISPATCH].settled(project_id)
    return project_id


def etag(version: int) -> dict[str, str]:
    return {"ETag": f'"{version}"'}


def written(body: Any, version: int, *, created: bool) -> web.Response:
    """201 for a record just created, 200 for an overwrite; the new version as the ETag."""
    return json_response(body, status=201 if created else 200, headers=etag(version))
