"""The `${ ... }` expression language of workflow configs, parsed the same way on both sides.

The service parses to validate a workflow when it is saved; the worker parses to render it.

    ${ secrets.NAME }  ${ ctx.secrets.NAME }      a Backend Secret
    ${ input.body.a.b }  ${ input.headers.x }  ${ input.query.q }
    ${ nodes.<id>.output.path.0 }               an earlier node's output
    $${                                         a literal "${"
"""

import re
from dataclasses import dataclass
from functools import lru_cache

from contract.names import is_valid_name

_SEGMENT = re.compile(r"[A-Za-z0-9_\-]+")
_INPUT_PARTS = frozenset({"body", "headers", "query"})


class TemplateError(ValueError):
    """A malformed expression; the message quotes the expression, which is config, not a value."""


@dataclass(frozen=True, slots=True)
class Ref:
    """One expression: `root` is "secrets", "input" or "nodes"; `path` the segments after it."""

    root: str
    path: tuple[str, ...]
    text: str


Part = str | Ref


def _parse_expression(text: str) -> Ref:
    segments = text.split(".")
    if not all(_SEGMENT.fullmatch(s) for s in segments):
        raise TemplateError(f"malformed expression ${{ {text} }}: use dotted names such as secrets.NAME")
    if segments[:2] == ["ctx", "secrets"]:
        segments = segments[1:]
    root, path = segments[0], tuple(segments[1:])
    if root == "secrets":
        if len(path) != 1 or not is_valid_name(path[0]):
            raise TemplateError(f"malformed expression ${{ {text} }}: write secrets.NAME with a valid name")
    elif root == "input":
        if not path or path[0] not in _INPUT_PARTS:
            raise TemplateError(f"malformed expression ${{ {text} }}: input.body, input.headers or input.query")
    elif root == "nodes":
        if len(path) < 2 or path[1] != "output":
            raise TemplateError(f"malformed expression ${{ {text} }}: write nodes.<id>.output[.path]")
    else:
        raise TemplateError(f"unknown expression ${{ {text} }}: it starts with secrets, ctx.secrets, input or nodes")
    return Ref(root=root, path=path, text=text)


@lru_cache(maxsize=4096)
def parse(template: str) -> tuple[Part, ...]:
    """Split a string into literal text and expressions. Cached: configs repeat."""
    parts: list[Part] = []
    literal: list[str] = []
    i = 0
    while i < len(template):
        if template.startswith("$${", i):
            literal.append("${")
            i += 3
        elif template.startswith("${", i):
            end = template.find("}", i + 2)
            if end < 0:
                raise TemplateError(f"unclosed expression at character {i}: '${{' needs a matching '}}'")
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append(_parse_expression(template[i + 2 : end].strip()))
            i = end + 1
        else:
            literal.append(template[i])
            i += 1
    if literal:
        parts.append("".join(literal))
    return tuple(parts)


def refs_in(config: object) -> list[Ref]:
    """Every expression in a JSON-like config (strings inside dicts and lists, keys excluded)."""
    if isinstance(config, str):
        return [part for part in parse(config) if isinstance(part, Ref)]
    if isinstance(config, dict):
        return [ref for value in config.values() for ref in refs_in(value)]
    if isinstance(config, list):
        return [ref for value in config for ref in refs_in(value)]
    return []


def secret_names_in(config: object) -> set[str]:
    return {ref.path[0] for ref in refs_in(config) if ref.root == "secrets"}


# What a code node's script could use to reach secrets: `${ secrets.X }`, `ctx.secrets`,
# `ctx?.secrets`, `ctx["secrets"]` and `{ secrets } = ctx`. Code is not a template (JS has its own
# `${}`), so these are searched for as text, by the service when a workflow is saved and by the
# worker again before it runs one.
CODE_SECRET_PATTERNS = (
    re.compile(r"\$\{\s*(?:ctx\s*\.\s*)?secrets\s*\."),
    re.compile(r"\bctx\s*(?:\?\.|\.)\s*secrets\b"),
    re.compile(r"\bctx\s*(?:\?\.)?\s*\[\s*[\"'`]secrets[\"'`]\s*\]"),
    re.compile(r"\{[^{}]*\bsecrets\b[^{}]*\}\s*=\s*ctx\b"),
)


def mentions_secrets(text: str) -> bool:
    return any(pattern.search(text) for pattern in CODE_SECRET_PATTERNS)


def strings_in(config: object) -> list[str]:
    """Every string value in a JSON-like config."""
    if isinstance(config, str):
        return [config]
    if isinstance(config, dict):
        return [text for value in config.values() for text in strings_in(value)]
    if isinstance(config, list):
        return [text for value in config for text in strings_in(value)]
    return []
