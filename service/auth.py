"""Bearer tokens: who is calling, and may they touch this project.

Tokens are random and long, so a SHA-256 of each is what is stored and looked up; the admin
token from the environment is compared in constant time. A token of another project gets a
404, so nobody learns whether a project exists.
"""

import enum
import hashlib
import hmac
import secrets as random_tokens
from typing import Protocol

import aiosqlite
import msgspec
from aiohttp import web

from contract.config import Secret
from contract.executions import GRANT_PREFIX
from service.actor import CURRENT, Actor
from service.errors import Forbidden, NotFound, Unauthorized
from service.store.executions import GrantRow, find_grant
from service.store.projects import NewToken, find_token


class Scope(enum.StrEnum):
    ADMIN = "admin"
    DASHBOARD = "dashboard"
    ENGINE = "engine"


TOKEN_PREFIX = {Scope.DASHBOARD: "bsd_", Scope.ENGINE: "bse_"}


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    scope: Scope
    token_id: str
    project_id: str | None = None


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def mint_token(scope: Scope) -> tuple[str, NewToken]:
    """A new token, shown once, and the row that stores its hash."""
    token = TOKEN_PREFIX[scope] + random_tokens.token_urlsafe(32)
    token_id = random_tokens.token_hex(6)
    return token, NewToken(hash=hash_token(token), token_id=token_id, scope=scope.value)


def bearer_token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send 'Authorization: Bearer <token>'", code="missing_token")
    return token.strip()


class CookieAuth(Protocol):
    """Resolves a request's session cookie (service.sessions); None when it has none."""

    async def principal(self, request: web.Request) -> Principal | None: ...


class Authenticator:
    """Resolves tokens to principals; remembers what it looked up (tokens change only here)."""

    def __init__(
        self, reader: aiosqlite.Connection, admin_token: Secret | None, sessions: CookieAuth | None = None
    ) -> None:
        self._reader = reader
        self._admin_hash = hash_token(admin_token.reveal()) if admin_token else None
        self._known: dict[bytes, Principal] = {}
        self._sessions = sessions
        # Grants minted here whose execution row is not committed yet: the request is queued while
        # the row is written, and a worker may ask for secrets before the row is there.
        self._minted: dict[bytes, GrantRow] = {}

    def minted(self, grant_hash: bytes, execution_id: str, project_id: str) -> None:
        self._minted[grant_hash] = GrantRow(execution_id=execution_id, project_id=project_id, live=True)

    def written(self, grant_hash: bytes) -> None:
        """The grant's row is committed (or will never be): the database answers from now on."""
        self._minted.pop(grant_hash, None)

    async def principal(self, request: web.Request) -> Principal:
        if self._sessions is not None and "Authorization" not in request.headers:
            session = await self._sessions.principal(request)  # the dashboard page's cookie, CSRF-checked
            if session is not None:
                return session
        token_hash = hash_token(bearer_token(request))
        if self._admin_hash is not None and hmac.compare_digest(token_hash, self._admin_hash):
            return Principal(scope=Scope.ADMIN, token_id="admin")  # noqa: S106 - an id, not a secret
        known = self._known.get(token_hash)
        if known is not None:
            return known
        row = await find_token(self._reader, token_hash)
        if row is None:
            raise Unauthorized("unknown token", code="invalid_token")
        principal = Principal(scope=Scope(row.scope), token_id=row.token_id, project_id=row.project_id)
        self._known[token_hash] = principal
        return principal

    def forget_project(self, project_id: str) -> None:
        for token_hash in [h for h, p in self._known.items() if p.project_id == project_id]:
            del self._known[token_hash]

    async def _identified(self, request: web.Request) -> Principal:
        """The principal, also remembered as the request's actor for the audit log (service.actor)."""
        principal = await self.principal(request)
        CURRENT.set(Actor(principal.scope.value, principal.token_id))
        return principal

    async def require(self, request: web.Request, scope: Scope, project_id: str | None = None) -> Principal:
        principal = await self._identified(request)
        if principal.scope is not scope:
            raise Forbidden(f"this route needs the {scope.value} token", code="wrong_token_scope")
        if project_id is not None and principal.project_id != project_id:
            raise NotFound("no such project", code="project_not_found")
        return principal

    async def require_manager(self, request: web.Request, project_id: str) -> Principal:
        """The admin token, or the project's own dashboard token (key rotation). The admin's answer
        for an unknown project is the store's 404."""
        principal = await self._identified(request)
        if principal.scope is Scope.ADMIN:
            return principal
        if principal.scope is not Scope.DASHBOARD:
            needed = "this route needs the project's dashboard token or the admin token"
            raise Forbidden(needed, code="wrong_token_scope")
        if principal.project_id != project_id:
            raise NotFound("no such project", code="project_not_found")
        return principal

    async def require_engine(self, request: web.Request, project_id: str) -> Principal:
        """The project's engine token, or the grant of one of its executions while that is open."""
        token = bearer_token(request)
        if not token.startswith(GRANT_PREFIX):
            return await self.require(request, Scope.ENGINE, project_id)
        grant_hash = hash_token(token)
        grant = self._minted.get(grant_hash) or await find_grant(self._reader, grant_hash)
        if grant is None:
            raise Unauthorized("unknown token", code="invalid_token")
        CURRENT.set(Actor(Scope.ENGINE.value, f"grant:{grant.execution_id}"))
        if grant.project_id != project_id:
            raise NotFound("no such project", code="project_not_found")
        if not grant.live:
            raise Unauthorized("this execution's grant has expired", code="grant_expired")
        return Principal(scope=Scope.ENGINE, token_id=f"grant:{grant.execution_id}", project_id=project_id)
