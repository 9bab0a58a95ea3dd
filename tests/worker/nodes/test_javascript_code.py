"""The javascript_code node: ctx.env and input, nothing else, within time and memory limits."""

import aiohttp
import pytest

from contract.executions import ExecutionInput
from contract.workflows import JavascriptCodeConfig
from worker.nodes import NodeFailed, NodeRun
from worker.nodes.javascript_code import run


@pytest.fixture
async def node_state() -> NodeRun:
    async with aiohttp.ClientSession() as session:
        yield NodeRun(input=ExecutionInput(body={"amount": 5}), raw_body=b"", http=session, outputs={"a": {"x": 1}})


async def test_sees_env_input_and_earlier_outputs(node_state: NodeRun) -> None:
    code = "return {env: ctx.env.REGION, amount: ctx.input.body.amount * 2, x: ctx.nodes.a.output.x};"
    output = await run(JavascriptCodeConfig(code=code, env_vars={"REGION": "eu"}), node_state)
    assert output == {"env": "eu", "amount": 10, "x": 1}


async def test_has_no_secrets_network_or_files(node_state: NodeRun) -> None:
    code = "return [typeof ctx.secrets, typeof fetch, typeof require, typeof std, typeof os, typeof XMLHttpRequest];"
    assert await run(JavascriptCodeConfig(code=code), node_state) == ["undefined"] * 6


async def test_js_template_literals_are_plain_javascript(node_state: NodeRun) -> None:
    code = "const who = ctx.env.WHO; return `hello ${who}`;"
    assert await run(JavascriptCodeConfig(code=code, env_vars={"WHO": "you"}), node_state) == "hello you"


@pytest.mark.parametrize(
    ("code", "error"),
    [
        ("while (true) {}", "code_timeout"),
        ("let a = []; while (true) { a.push(new Array(100000).fill(1)); }", "code_memory_limit"),
        ("throw new Error('boom');", "code_error"),
    ],
)
async def test_limits_and_errors(node_state: NodeRun, code: str, error: str) -> None:
    with pytest.raises(NodeFailed) as failed:
        await run(JavascriptCodeConfig(code=code, timeout_ms=200, memory_mb=8), node_state)
    assert failed.value.code == error
