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


def _needs_rendering(value: Any) -> bool:
    """A string with `${`, or a dict or list that may hold one: anything else renders as itself."""
    return isinstance(value, (dict, list)) or (isinstance(value, str) and "${" in value)


async def render(config: Any, resolve: Resolve) -> Any:
    """`config` with its expressions rendered; dicts and lists are copies, even with none inside."""
    if isinstance(config, str):
        return await render_string(config, resolve) if "${" in config else config
    if not isinstance(config, (dict, list)):
        return config
    # A copy whose items are rendered in place by a loop: a comprehension holding an `await` is a
    # coroutine of its own (Python 3.11), and items that render as themselves cost no coroutine.
    rendered = config.copy()
    for key, value in config.items() if isinstance(config, dict) else enumerate(config):
        if _needs_rendering(value):
            rendered[key] = await render(value, resolve)
    return rendered
