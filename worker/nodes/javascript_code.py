"""javascript_code: a function body run in QuickJS with `ctx` = {env, input, nodes} and nothing else.

No `ctx.secrets`, no credentials, no network, no files (QuickJS here has no std/os modules),
a time limit and a memory limit. Each run gets a fresh JS context in a worker thread, so a slow
script never blocks the event loop and nothing leaks between runs.
"""

import asyncio
from typing import Any

import msgspec
import quickjs

from contract.workflows import JavascriptCodeConfig
from worker.nodes.base import NodeFailed, NodeRun

_WRAPPER = "(function (ctx) {\n%s\n})"


def _run_js(code: str, ctx_json: str, timeout_ms: int, memory_mb: int) -> Any:
    context = quickjs.Context()
    context.set_time_limit(timeout_ms / 1000)
    context.set_memory_limit(memory_mb * 1024 * 1024)
    context.set("__ctx_json", ctx_json)
    script = f"JSON.stringify({_WRAPPER % code}(Object.freeze(JSON.parse(__ctx_json))))"
    try:
        result = context.eval(script)
    except quickjs.JSException as exc:
        raise _failure(str(exc).splitlines()[0], timeout_ms, memory_mb) from None
    except quickjs.StackOverflow:
        raise NodeFailed("code_error", "the code overflowed its stack") from None
    except MemoryError:
        raise NodeFailed("code_memory_limit", f"the code used more than {memory_mb} MB") from None
    return None if result is None else msgspec.json.decode(result)


def _failure(first_line: str, timeout_ms: int, memory_mb: int) -> NodeFailed:
    if "interrupted" in first_line:
        return NodeFailed("code_timeout", f"the code ran longer than {timeout_ms} ms")
    if "out of memory" in first_line:
        return NodeFailed("code_memory_limit", f"the code used more than {memory_mb} MB")
    return NodeFailed("code_error", f"the code raised: {first_line}")


async def run(config: JavascriptCodeConfig, state: NodeRun) -> Any:
    ctx = {"env": config.env_vars, "input": msgspec.to_builtins(state.input), "nodes": _outputs(state)}
    ctx_json = msgspec.json.encode(ctx).decode()
    return await asyncio.to_thread(_run_js, config.code, ctx_json, config.timeout_ms, config.memory_mb)


def _outputs(state: NodeRun) -> dict[str, Any]:
    return {node_id: {"output": output} for node_id, output in state.outputs.items()}
