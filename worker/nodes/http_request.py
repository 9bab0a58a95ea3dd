"""http_request: an outbound HTTP call; the output is its status, headers and JSON or text."""

from typing import Any

import aiohttp
import msgspec

from contract.workflows import HttpRequestConfig
from worker.nodes.base import NodeFailed, NodeRun

MAX_RESPONSE_BYTES = 1024 * 1024


async def run(config: HttpRequestConfig, state: NodeRun, extra_headers: dict[str, str] | None = None) -> Any:
    headers = {**config.headers, **(extra_headers or {})}
    kwargs: dict[str, Any] = {"headers": headers, "params": config.query or None}
    if config.json is not msgspec.UNSET:
        kwargs["json"] = config.json
    elif isinstance(config.body, str):
        kwargs["data"] = config.body.encode("utf-8")
    timeout = aiohttp.ClientTimeout(total=config.timeout_s)
    try:
        async with state.http.request(config.method.upper(), config.url, timeout=timeout, **kwargs) as response:
            body = await response.content.read(MAX_RESPONSE_BYTES)
            return _output(response, body)
    except TimeoutError:
        raise NodeFailed("http_timeout", f"the request took longer than {config.timeout_s} s") from None
    except (aiohttp.ClientError, ValueError) as exc:
        raise NodeFailed("http_request_failed", f"the request failed: {type(exc).__name__}: {exc}") from None


def _output(response: aiohttp.ClientResponse, body: bytes) -> dict[str, Any]:
    output: dict[str, Any] = {"status": response.status, "headers": dict(response.headers)}
    if response.content_type == "application/json":
        try:
            output["json"] = msgspec.json.decode(body)
            return output
        except msgspec.DecodeError:
            pass
    output["text"] = body.decode("utf-8", errors="replace")
    return output
