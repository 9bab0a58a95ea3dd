"""Cookie sessions for the dashboard page, and the CSRF check that goes with them.

A dashboard token is exchanged once (POST /api/session) for a random session id in a cookie that
is HttpOnly (no script reads it), SameSite=Strict (no other site sends it) and Secure when the
page was served over TLS. Every state-changing request authenticated by that cookie must also
carry the session's CSRF token in `X-CSRF-Token` (double submit: a page of another origin can
neither read the token nor set the header). A request with `Authorization: Bearer` does not use
the cookie at all, so it needs no CSRF token.
"""

import hashlib
import hmac
import secrets as random
import time
from datetime import UTC, datetime

import aiosqlite
from aiohttp import web

from service.auth import Principal, Scope
from service.errors import Forbidden, Unauthorized
from service.store.sessions import SessionRow, find_session

COOKIE = "bs_session"
CSRF_HEADER = "X-CSRF-Token"
TTL_S = 12 * 3600
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class NewSession:
    """A freshly minted session: the cookie value and the row that stores its hash."""

    def __init__(self, project_id: str, token_id: str, now: float) -> None:
        self.cookie = random.token_urlsafe(32)
        self.id_hash = hash_session_id(self.cookie)
        self.row = SessionRow(
            project_id=project_id, token_id=token_id, csrf_token=random.token_urlsafe(32), expires_at=now + TTL_S
        )

    def __repr__(self) -> str:
        return f"NewSession(project_id={self.row.project_id!r}, <hidden>)"


def hash_session_id(session_id: str) -> bytes:
    return hashlib.sha256(session_id.encode("utf-8")).digest()


def rfc3339(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def served_over_tls(request: web.Request) -> bool:
    """TLS here, or at the proxy in front (X-Forwarded-Proto: https)."""
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return request.secure or forwarded == "https"


def set_session_cookie(response: web.StreamResponse, request: web.Request, session_id: str) -> None:
    response.set_cookie(
        COOKIE,
        session_id,
        max_age=TTL_S,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=served_over_tls(request),
    )


def clear_session_cookie(response: web.StreamResponse, request: web.Request) -> None:
    response.set_cookie(
        COOKIE, "", max_age=0, path="/", httponly=True, samesite="Strict", secure=served_over_tls(request)
    )


async def current_session(reader: aiosqlite.Connection, request: web.Request) -> SessionRow | None:
    """The live session the request's cookie names; None without a cookie; 401 for an ended one."""
    session_id = request.cookies.get(COOKIE)
    if not session_id:
        return None
    row = await find_session(reader, hash_session_id(session_id), time.time())
    if row is None:
        raise Unauthorized("your session has ended; sign in again", code="session_expired")
    return row


def check_csrf(request: web.Request, row: SessionRow) -> None:
    if request.method in SAFE_METHODS:
        return
    sent = request.headers.get(CSRF_HEADER, "")
    if not hmac.compare_digest(sent.encode("utf-8"), row.csrf_token.encode("utf-8")):
        raise Forbidden(
            f"a change made with a session cookie needs the session's CSRF token in the {CSRF_HEADER} header",
            code="csrf_failed",
        )


class CookieSessions:
    """What the Authenticator asks when a request has no Authorization header."""

    def __init__(self, reader: aiosqlite.Connection) -> None:
        self._reader = reader

    async def principal(self, request: web.Request) -> Principal | None:
        row = await current_session(self._reader, request)
        if row is None:
            return None
        check_csrf(request, row)
        return Principal(scope=Scope.DASHBOARD, token_id=row.token_id, project_id=row.project_id)
