"""Runs one workflow: nodes in order, each config rendered the moment its node starts.

Secrets are read through the execution's `ctx.secrets` (so a change between two nodes is seen
by the second), and everything the execution records is masked with the values it revealed.
"""

import base64
import binascii
import logging
import time
from typing import Any

import aiohttp
import msgspec

from contract.credential_types import CREDENTIAL_TYPES, authorization_header
from contract.executions import ErrorInfo, ExecutionInput, ExecutionResult, NodeRecord
from contract.templates import Ref, TemplateError, mentions_secrets, parse, strings_in
from contract.workflows import CODE_NODE_TYPES, HttpRequestConfig, Node, VerifyWebhookConfig, Workflow
from worker.context import ExecutionContext
from worker.errors import EngineError
from worker.masking import Masker
from worker.nodes import NODE_RUNNERS, NodeFailed, NodeRun, http_request, verify_webhook
from worker.templates import render

log = logging.getLogger("worker.executor")


class _Missing(EngineError):
    code = "expression_unresolved"


def _walk(data: Any, path: tuple[str, ...]) -> Any:
    for segment in path:
        if isinstance(data, dict):
            data = data.get(segment)
        elif isinstance(data, list) and segment.isdigit() and int(segment) < len(data):
            data = data[int(segment)]
        else:
            return None
    return data


class Execution:
    """One run of one workflow for one input, inside an ExecutionContext."""

    def __init__(self, ctx: ExecutionContext, workflow: Workflow, data: ExecutionInput, http: aiohttp.ClientSession):
        self.ctx = ctx
        self.workflow = workflow
        self.state = NodeRun(input=data, raw_body=_raw_body(data), http=http)
        self.records: list[NodeRecord] = []

    async def resolve(self, ref: Ref) -> Any:
        if ref.root == "secrets":
            return await self.ctx.secrets.get(ref.path[0])
        if ref.root == "input":
            return self._input_value(ref.path)
        node_id = ref.path[0]
        if node_id not in self.state.outputs:
            raise _Missing(f"${{ {ref.text} }} refers to node {node_id!r}, which has not run")
        return _walk(self.state.outputs[node_id], ref.path[2:])

    def _input_value(self, path: tuple[str, ...]) -> Any:
        part, rest = path[0], path[1:]
        if part == "headers":
            return self.state.input.headers.get(rest[0].lower()) if rest else self.state.input.headers
        return _walk(self.state.input.body if part == "body" else self.state.input.query, rest)

    async def run(self) -> ExecutionResult:
        started = time.time()
        error: ErrorInfo | None = None
        for node in self.workflow.nodes:
            error = await self._run_node(node)
            if error is not None:
                break
        return self._result(started, error)

    async def _run_node(self, node: Node) -> ErrorInfo | None:
        started = time.time()
        self.ctx.secrets.node_id = node.id
        try:
            output = await self._execute(node)
        except (EngineError, TemplateError) as exc:
            info = _error_info(exc, node.id)
            self.records.append(
                NodeRecord(
                    id=node.id, type=node.type, status="failed", started_at=started, finished_at=time.time(), error=info
                )
            )
            return info
        self.state.outputs[node.id] = output
        self.records.append(
            NodeRecord(
                id=node.id,
                type=node.type,
                status="succeeded",
                started_at=started,
                finished_at=time.time(),
                output=output,
            )
        )
        return None

    async def _execute(self, node: Node) -> Any:
        entry = NODE_RUNNERS.get(node.type)
        if entry is None:
            raise NodeFailed("unknown_node_type", f"node {node.id!r} has the unknown type {node.type!r}")
        config_type, runner = entry
        if node.type in CODE_NODE_TYPES:
            if any(mentions_secrets(text) for text in strings_in(node.config)) or "credential" in node.config:
                raise NodeFailed("secrets_not_allowed_in_code_node", f"node {node.id!r} may not read secrets")
            rendered = node.config  # code is never a template: JS has its own `${}`
        else:
            rendered = await render(node.config, self.resolve)
        try:
            config = msgspec.convert(rendered, config_type)
        except msgspec.ValidationError as exc:
            raise NodeFailed("invalid_config", f"node {node.id!r}: {exc}") from None
        if isinstance(config, VerifyWebhookConfig):
            return await verify_webhook.run(config, self.state, await self._previous_secrets(node))
        if isinstance(config, HttpRequestConfig) and config.credential:
            return await http_request.run(config, self.state, await self._credential_headers(config.credential))
        return await runner(config, self.state)

    async def _credential_headers(self, name: str) -> dict[str, str]:
        """The credential's auth header, added by the engine: its values never enter a template."""
        type_name, fields = await self.ctx.secrets.credential(name)
        kind = CREDENTIAL_TYPES.get(type_name)
        if kind is None:
            raise NodeFailed("unknown_credential_type", f"credential {name!r} has a type this worker does not know")
        header = authorization_header(kind, fields)
        self.ctx.secrets.revealed.add(header.split(" ", 1)[1])  # Basic's base64 holds no raw field value
        return {"Authorization": header}

    async def _previous_secrets(self, node: Node) -> list[str]:
        """A signing key's old value during its rotation overlap, when `secret` is one reference."""
        parts = parse(node.config.get("secret", "")) if isinstance(node.config.get("secret"), str) else ()
        if len(parts) != 1 or not isinstance(parts[0], Ref) or parts[0].root != "secrets":
            return []
        return await self.ctx.secrets.previous(parts[0].path[0])

    def _result(self, started: float, error: ErrorInfo | None) -> ExecutionResult:
        masker = Masker(self.ctx.secrets.revealed)
        last = self.records[-1].output if self.records and error is None else None
        return ExecutionResult(
            status="failed" if error else "succeeded",
            nodes=[
                msgspec.structs.replace(r, output=masker.data(r.output), error=_mask_error(r.error, masker))
                for r in self.records
            ],
            output=masker.data(last),
            response=_mask_reply(self.state, masker),
            error=_mask_error(error, masker),
            started_at=started,
            finished_at=time.time(),
            reads=list(self.ctx.secrets.reads),
        )


def _raw_body(data: ExecutionInput) -> bytes:
    try:
        return base64.b64decode(data.raw_body) if data.raw_body else b""
    except (ValueError, binascii.Error):
        return b""


def _error_info(exc: Exception, node_id: str) -> ErrorInfo:
    if isinstance(exc, TemplateError):
        return ErrorInfo(code="invalid_expression", message=str(exc), node_id=node_id)
    assert isinstance(exc, EngineError)
    return ErrorInfo(code=exc.code, message=exc.message, node_id=node_id, http_status=getattr(exc, "http_status", None))


def _mask_error(error: ErrorInfo | None, masker: Masker) -> ErrorInfo | None:
    return None if error is None else msgspec.structs.replace(error, message=masker.text(error.message))


def _mask_reply(state: NodeRun, masker: Masker) -> Any:
    reply = state.reply
    if reply is None:
        return None
    return msgspec.structs.replace(reply, headers=masker.data(reply.headers), body=masker.data(reply.body))
