"""Workflow definitions and node configs: the service validates them when saved, the worker runs them.

A workflow is {"trigger": {"type": "webhook"}, "nodes": [{"id", "type", "config"}, ...]}; nodes
run in order and each one's output is available to later nodes as `${ nodes.<id>.output... }`.
Configs are decoded into the Structs below *after* rendering on the worker, and with their
expressions still in place on the service (a string field may always hold an expression).
"""

from typing import Any, Final, Literal

import msgspec

NODE_ID_RE = r"^[A-Za-z0-9_\-]{1,64}$"
NodeId = str


class Trigger(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    type: Literal["webhook", "manual"] = "webhook"


class Node(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: str
    type: str
    config: dict[str, Any] = msgspec.field(default_factory=dict)


class Workflow(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    nodes: list[Node]
    trigger: Trigger = msgspec.field(default_factory=Trigger)


class VerifyWebhookConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`stripe`: Stripe-Signature `t=…,v1=…`, HMAC-SHA256 of "{t}.{raw body}", several v1 allowed.
    `hmac_sha256`: the hex or base64 HMAC-SHA256 of the raw body in header `header`."""

    scheme: Literal["stripe", "hmac_sha256"]
    secret: str
    header: str | None = None
    tolerance_s: int = 300
    encoding: Literal["hex", "base64"] = "hex"


class HttpRequestConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    url: str
    method: str = "GET"
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    query: dict[str, str] = msgspec.field(default_factory=dict)
    json: Any = msgspec.UNSET
    body: str | msgspec.UnsetType = msgspec.UNSET
    timeout_s: float = 10.0
    credential: str | None = None


class JavascriptCodeConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    code: str
    env_vars: dict[str, str] = msgspec.field(default_factory=dict)
    timeout_ms: int = 1_000
    memory_mb: int = 32


class RespondConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    status: int = 200
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    body: Any = None


NODE_CONFIGS: Final[dict[str, type[msgspec.Struct]]] = {
    "verify_webhook": VerifyWebhookConfig,
    "http_request": HttpRequestConfig,
    "javascript_code": JavascriptCodeConfig,
    "respond": RespondConfig,
}
CODE_NODE_TYPES: Final = frozenset({"javascript_code"})
