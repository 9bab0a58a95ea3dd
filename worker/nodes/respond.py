"""respond: sets the webhook's HTTP response (status, headers, body)."""

from typing import Any

from contract.executions import HttpReply
from contract.workflows import RespondConfig
from worker.nodes.base import NodeRun


async def run(config: RespondConfig, state: NodeRun) -> Any:
    state.reply = HttpReply(status=config.status, headers=config.headers, body=config.body)
    return {"status": config.status}
