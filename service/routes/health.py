"""Liveness and readiness: /healthz says the process runs, /readyz that SQLite and Redis answer."""

import asyncio
from typing import Literal

import msgspec
from aiohttp import web
from redis.exceptions import RedisError

from service.openapi import Auth, describe
from service.responses import json_response
from service.state import READER, REDIS

routes = web.RouteTableDef()
CHECK_TIMEOUT_S = 2.0
Check = Literal["ok", "failing"]


class Health(msgspec.Struct, frozen=True):
    status: Literal["ok"] = "ok"


class Checks(msgspec.Struct, frozen=True, kw_only=True):
    sqlite: Check
    redis: Check


class Readiness(msgspec.Struct, frozen=True, kw_only=True):
    status: Literal["ready", "not_ready"]
    checks: Checks


@routes.get("/healthz")
@describe("The process runs", auth=Auth.PUBLIC, responses={200: Health})
async def healthz(request: web.Request) -> web.Response:
    return json_response(Health())


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


def _check(ok: bool) -> Check:
    return "ok" if ok else "failing"


@routes.get("/readyz")
@describe("SQLite and Redis answer", auth=Auth.PUBLIC, responses={200: Readiness, 503: Readiness})
async def readyz(request: web.Request) -> web.Response:
    sqlite_ok, redis_ok = await _sqlite_ok(request), await _redis_ok(request)
    ready = sqlite_ok and redis_ok
    checks = Checks(sqlite=_check(sqlite_ok), redis=_check(redis_ok))
    body = Readiness(status="ready" if ready else "not_ready", checks=checks)
    return json_response(body, status=200 if ready else 503)
