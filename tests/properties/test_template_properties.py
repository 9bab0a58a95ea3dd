"""Template rendering, for any input: `contract.templates.parse` (the service validates with it) and
`worker.templates.render` (the engine renders with it) agree on what a config string means.

- a string with no `${` comes back unchanged, alone or anywhere in a JSON config;
- `$${` is a literal `${`, and an escaped expression is never resolved;
- a string that is exactly one expression keeps the value's JSON type; inside text it becomes text;
- any string either parses or is refused with a TemplateError, never another exception.
"""

from typing import Any

import msgspec
from hypothesis import assume, given
from hypothesis import strategies as st

from contract.templates import Ref, TemplateError, parse
from tests.properties.support import PROPERTY, run
from worker.templates import render, render_string

# Text rich in the characters the syntax is made of, plus anything else.
SYNTAX = st.sampled_from(["$", "{", "}", "$$", " ", ".", "\\", "secrets", "ctx"])
TEXT = st.lists(st.one_of(SYNTAX, st.text(max_size=8)), max_size=10).map("".join)
PLAIN = TEXT.filter(lambda s: "${" not in s)
NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,30}", fullmatch=True)
SPACE = st.sampled_from(["", " ", "  ", "\t"])
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def config_of(strings: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    """JSON-like node configs whose strings come from `strings` (keys are never rendered)."""
    leaves = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | strings
    return st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=16,
    )


class Resolver:
    """Answers every reference with `value` and remembers what it was asked."""

    def __init__(self, value: Any = None) -> None:
        self.value = value
        self.asked: list[Ref] = []

    async def __call__(self, ref: Ref) -> Any:
        self.asked.append(ref)
        return self.value


def expression(name: str, ctx: bool, before: str, after: str) -> str:
    return f"${{{before}{'ctx.' if ctx else ''}secrets.{name}{after}}}"


@PROPERTY
@given(PLAIN)
def test_a_string_without_an_expression_round_trips_unchanged(text: str) -> None:
    resolve = Resolver()
    assert parse(text) == ((text,) if text else ())
    assert run(render_string(text, resolve)) == text
    assert run(render(text, resolve)) == text
    assert resolve.asked == []


@PROPERTY
@given(config_of(PLAIN))
def test_a_config_without_an_expression_round_trips_unchanged(config: Any) -> None:
    resolve = Resolver()
    rendered = run(render(config, resolve))
    assert rendered == config and msgspec.json.encode(rendered) == msgspec.json.encode(config)
    assert resolve.asked == []


@PROPERTY
@given(st.lists(PLAIN, min_size=2, max_size=5))
def test_an_escape_is_a_literal_dollar_brace(chunks: list[str]) -> None:
    resolve = Resolver()
    assert run(render("$${".join(chunks), resolve)) == "${".join(chunks)
    assert resolve.asked == []


@PROPERTY
@given(NAMES, st.booleans(), SPACE, SPACE, PLAIN, PLAIN)
def test_an_escaped_expression_is_text_and_never_resolved(
    name: str, ctx: bool, before: str, after: str, prefix: str, suffix: str
) -> None:
    assume(not prefix.endswith("$"))
    resolve = Resolver("never")
    escaped = prefix + "$" + expression(name, ctx, before, after) + suffix
    assert run(render(escaped, resolve)) == prefix + expression(name, ctx, before, after) + suffix
    assert resolve.asked == []


@PROPERTY
@given(NAMES, st.booleans(), SPACE, SPACE, JSON)
def test_a_string_that_is_one_expression_keeps_the_json_type(
    name: str, ctx: bool, before: str, after: str, value: Any
) -> None:
    resolve = Resolver(value)
    template = expression(name, ctx, before, after)
    rendered = run(render({"config": [template]}, resolve))
    assert type(rendered["config"][0]) is type(value)
    assert msgspec.json.encode(rendered) == msgspec.json.encode({"config": [value]})
    assert [(ref.root, ref.path) for ref in resolve.asked] == [("secrets", (name,))]


@PROPERTY
@given(NAMES, SPACE, SPACE, JSON, PLAIN, PLAIN)
def test_an_expression_inside_text_renders_as_text(
    name: str, before: str, after: str, value: Any, prefix: str, suffix: str
) -> None:
    assume((prefix or suffix) and not prefix.endswith("$"))
    resolve = Resolver(value)
    rendered = run(render(prefix + expression(name, False, before, after) + suffix, resolve))
    as_text = value if isinstance(value, str) else msgspec.json.encode(value).decode()
    assert rendered == prefix + as_text + suffix


@PROPERTY
@given(TEXT)
def test_any_string_parses_or_is_refused_with_a_template_error(text: str) -> None:
    try:
        parts = parse(text)
    except TemplateError as exc:
        assert str(exc)
        return
    literal = "".join(part for part in parts if isinstance(part, str))
    assert all(isinstance(part, str | Ref) for part in parts)
    assert len(literal) <= len(text)
