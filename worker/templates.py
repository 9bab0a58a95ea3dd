"""Rendering `${ }` expressions in a node's JSON config at the moment the node runs."""

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from contract.templates import Ref, parse

Resolve = Callable[[Ref], Awaitable[Any]]


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else msgspec.json.encode(value).decode()


async def render_string(template: str, resolve: Resolve) -> Any:
    """A string that is exactly one expression keeps the value's JSON type; otherwise text."""
    parts = parse(template)
    if len(parts) == 1 and isinstance(parts[0], Ref):
        return await resolve(parts[0])
    pieces = [part if isinstance(part, str) else _as_text(await resolve(part)) for part in parts]
    return "".join(pieces)


async def render(config: Any, resolve: Resolve) -> Any:
    if isinstance(config, str):
        return await render_string(config, resolve) if "${" in config else config
    if isinstance(config, dict):
        return {key: await render(value, resolve) for key, value in config.items()}
    if isinstance(config, list):
        return [await render(value, resolve) for value in config]
    return config
