"""Liveness and readiness: /healthz says the process runs, /readyz that SQLite and Redis answer."""

import asyncio

from aiohttp import web
from redis.exceptions import RedisError

from service.responses import json_response
from service.state import READER, REDIS

routes = web.RouteTableDef()
CHECK_TIMEOUT_S = 2.0


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def _sqlite_ok(request: web.Request) -> bool:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            await request.app[READER].execute("SELECT 1")
        return True
    except Exception:
        return False


async def _redis_ok(request: web.Request) -> bool:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            return bool(await request.app[REDIS].ping())
    except (RedisError, OSError, TimeoutError):
        return False


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    checks = {"sqlite": await _sqlite_ok(request), "redis": await _redis_ok(request)}
    ready = all(checks.values())
    body = {
        "status": "ready" if ready else "not_ready",
        "checks": {k: "ok" if v else "failing" for k, v in checks.items()},
    }
    return json_response(body, status=200 if ready else 503)
