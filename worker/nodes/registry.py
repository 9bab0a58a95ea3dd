"""Node type -> (config Struct, runner)."""

from collections.abc import Awaitable, Callable
from typing import Any, Final

import msgspec

from contract.workflows import NODE_CONFIGS
from worker.nodes import http_request, javascript_code, respond, verify_webhook
from worker.nodes.base import NodeRun

Runner = Callable[[Any, NodeRun], Awaitable[Any]]

NODE_RUNNERS: Final[dict[str, tuple[type[msgspec.Struct], Runner]]] = {
    "verify_webhook": (NODE_CONFIGS["verify_webhook"], verify_webhook.run),
    "http_request": (NODE_CONFIGS["http_request"], http_request.run),
    "javascript_code": (NODE_CONFIGS["javascript_code"], javascript_code.run),
    "respond": (NODE_CONFIGS["respond"], respond.run),
}
