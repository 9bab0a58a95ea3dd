"""GET /metrics (Prometheus text) and GET /api/openapi.json (the API, described from its own types)."""

from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from service.openapi import Auth, Media, build_document, describe
from service.responses import json_response
from service.state import METRICS

routes = web.RouteTableDef()


@routes.get("/metrics")
@describe("Prometheus metrics of this service", auth=Auth.PUBLIC, responses={200: Media("text/plain")})
async def metrics(request: web.Request) -> web.Response:
    """Request counts and latencies by route and status, the outbox, the writer. Never a name or value."""
    return web.Response(body=request.app[METRICS].render(), headers={"Content-Type": CONTENT_TYPE_LATEST})


@routes.get("/api/openapi.json")
@describe("This API as an OpenAPI 3.1 document", auth=Auth.PUBLIC, responses={200: dict[str, Any]})
async def openapi(request: web.Request) -> web.Response:
    return json_response(build_document(request.app.router), headers={"Cache-Control": "no-cache"})
