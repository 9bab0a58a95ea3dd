"""Signing the dashboard page in and out: a dashboard token exchanged for a session cookie.

POST   /api/session {"token"}  -> 200 {"project", "csrf_token", "expires_at"} and the cookie
GET    /api/session            -> 200 the same (no cookie set) | 401
DELETE /api/session            -> 204, cookie cleared (a live session needs its CSRF token)

The CSRF token also comes back in the X-CSRF-Token response header.
"""

import hmac
import time

import msgspec
from aiohttp import web

from service import sessions
from service.auth import bearer_token, hash_token
from service.bodies import read_json
from service.errors import Forbidden, Unauthorized
from service.openapi import Auth, describe
from service.responses import json_response
from service.state import READER, SETTINGS, WRITER
from service.store.projects import find_token
from service.store.sessions import SessionRow, create_session, delete_session, find_session

routes = web.RouteTableDef()
NO_STORE = {"Cache-Control": "no-store"}


class SignIn(msgspec.Struct, forbid_unknown_fields=True):
    token: str

    def __repr__(self) -> str:
        return "SignIn(token=<hidden>)"


class SessionInfo(msgspec.Struct, kw_only=True):
    """The signed-in session as the page sees it; `csrf_token` goes in X-CSRF-Token on every change."""

    project: str
    csrf_token: str
    expires_at: str


def _headers(row: SessionRow) -> dict[str, str]:
    return {**NO_STORE, sessions.CSRF_HEADER: row.csrf_token}


def _described(row: SessionRow) -> SessionInfo:
    return SessionInfo(project=row.project_id, csrf_token=row.csrf_token, expires_at=sessions.rfc3339(row.expires_at))


async def _sign_in_token(request: web.Request) -> str:
    if not request.body_exists and "Authorization" in request.headers:
        return bearer_token(request)
    return (await read_json(request, SignIn)).token


def _is_admin_token(request: web.Request, token: str) -> bool:
    admin = request.app[SETTINGS].admin_token
    return admin is not None and hmac.compare_digest(hash_token(token), hash_token(admin.reveal()))


@routes.post("/api/session")
@describe(
    "Sign the dashboard page in: a dashboard token for a session cookie",
    auth=Auth.PUBLIC,
    body=SignIn,
    responses={200: SessionInfo},
    errors=(401, 403),
)
async def sign_in(request: web.Request) -> web.Response:
    """The token comes in the body; a bodiless request may send it as `Authorization: Bearer` instead."""
    token = (await _sign_in_token(request)).strip()
    row = await find_token(request.app[READER], hash_token(token)) if token else None
    if row is None:
        if token and _is_admin_token(request, token):
            raise Forbidden("sign in with a project's dashboard token, not the admin token", code="wrong_token_scope")
        raise Unauthorized("unknown token", code="invalid_token")
    if row.scope != "dashboard":
        raise Forbidden("sign in with the project's dashboard token", code="wrong_token_scope")
    new = sessions.NewSession(row.project_id, row.token_id, time.time())
    await request.app[WRITER].submit(create_session(new.id_hash, new.row, time.time()))
    response = json_response(_described(new.row), headers=_headers(new.row))
    sessions.set_session_cookie(response, request, new.cookie)
    return response


@routes.get("/api/session")
@describe("The signed-in session and its CSRF token", auth=Auth.SESSION, responses={200: SessionInfo})
async def current(request: web.Request) -> web.Response:
    row = await sessions.current_session(request.app[READER], request)
    if row is None:
        raise Unauthorized("not signed in", code="not_signed_in")
    return json_response(_described(row), headers=_headers(row))


@routes.delete("/api/session")
@describe(
    "Sign out: ends the session and clears its cookie", auth=Auth.SESSION_OPTIONAL, responses={204: None}, errors=(403,)
)
async def sign_out(request: web.Request) -> web.Response:
    session_id = request.cookies.get(sessions.COOKIE)
    id_hash = sessions.hash_session_id(session_id) if session_id else None
    row = await find_session(request.app[READER], id_hash, time.time()) if id_hash else None
    if id_hash and row is not None:  # an ended session is only a cookie to clear
        sessions.check_csrf(request, row)
        await request.app[WRITER].submit(delete_session(id_hash))
    response = web.Response(status=204, headers=NO_STORE)
    sessions.clear_session_cookie(response, request)
    return response
