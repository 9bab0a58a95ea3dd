"""Who makes the current request, for the audit log: set where a token resolves, read by the writer.

The Authenticator sets `CURRENT` as soon as it knows the principal; `Writer.submit` captures it,
so every change an operation commits is attributed to the request that submitted it without the
handlers passing it along. aiohttp runs each request in a task of its own, so one request's
actor never leaks into another's (and the refusal middleware resets it per request anyway).
"""

import contextvars

import msgspec


class Actor(msgspec.Struct, frozen=True, omit_defaults=True):
    """`kind`: admin, dashboard, engine, anonymous (no valid token) or system (the service itself)."""

    kind: str
    id: str | None = None


SYSTEM = Actor("system")
ANONYMOUS = Actor("anonymous")
CURRENT: contextvars.ContextVar[Actor | None] = contextvars.ContextVar("backend_secrets_actor", default=None)
