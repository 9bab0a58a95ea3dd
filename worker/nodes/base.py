"""What a node sees while it runs, and how it fails."""

from dataclasses import dataclass, field
from typing import Any

import aiohttp

from contract.executions import ExecutionInput, HttpReply
from worker.errors import EngineError


class NodeFailed(EngineError):
    """A node's own failure, with a code and the HTTP status a webhook caller should get."""

    def __init__(self, code: str, message: str, http_status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.http_status = http_status


@dataclass
class NodeRun:
    """The execution state a node may use: the trigger's input, earlier outputs, the reply."""

    input: ExecutionInput
    raw_body: bytes
    http: aiohttp.ClientSession
    outputs: dict[str, Any] = field(default_factory=dict)
    reply: HttpReply | None = None
