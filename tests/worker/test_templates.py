"""Rendering `${ }` expressions in a node's config at run time (worker/templates.py)."""

from typing import Any

import pytest

from contract.templates import Ref, TemplateError
from worker.templates import render, render_string

pytestmark = pytest.mark.timeout(10)


class Resolver:
    """Answers from a dict keyed by the expression's path, and records each call."""

    def __init__(self, values: dict[tuple[str, ...], Any]) -> None:
        self.values = values
        self.calls: list[tuple[str, tuple[str, ...]]] = []

    async def __call__(self, ref: Ref) -> Any:
        self.calls.append((ref.root, ref.path))
        return self.values[(ref.root, *ref.path)]


async def test_secret_references_in_nested_configs_are_replaced() -> None:
    resolve = Resolver({("secrets", "TOKEN"): "tok-1", ("secrets", "HOST"): "api.example"})
    config = {
        "url": "https://${ secrets.HOST }/v1",
        "headers": {"Authorization": "Bearer ${ctx.secrets.TOKEN}"},
        "retries": 3,
        "flags": [True, None, 1.5, "${ secrets.TOKEN }"],
    }
    assert await render(config, resolve) == {
        "url": "https://api.example/v1",
        "headers": {"Authorization": "Bearer tok-1"},
        "retries": 3,
        "flags": [True, None, 1.5, "tok-1"],
    }


async def test_keys_and_plain_strings_are_left_alone() -> None:
    resolve = Resolver({})
    config = {"${ secrets.KEY }": "plain", "braces": "{not} $an {expression}"}
    assert await render(config, resolve) == config
    assert resolve.calls == []


async def test_a_whole_string_expression_keeps_the_json_type() -> None:
    resolve = Resolver({("input", "body", "order"): {"id": 7, "items": [1, 2]}})
    assert await render_string("${ input.body.order }", resolve) == {"id": 7, "items": [1, 2]}
    assert await render_string("order=${ input.body.order }", resolve) == 'order={"id":7,"items":[1,2]}'


async def test_a_value_that_looks_like_an_expression_is_not_rendered_again() -> None:
    resolve = Resolver({("secrets", "A"): "${ secrets.B }", ("secrets", "B"): "never-read"})
    assert await render({"x": "${ secrets.A }", "y": "<${ secrets.A }>"}, resolve) == {
        "x": "${ secrets.B }",
        "y": "<${ secrets.B }>",
    }
    assert resolve.calls == [("secrets", ("A",)), ("secrets", ("A",))]


async def test_escaped_expressions_stay_literal() -> None:
    resolve = Resolver({})
    assert await render({"js": "`$${ secrets.X }`"}, resolve) == {"js": "`${ secrets.X }`"}
    assert resolve.calls == []


async def test_a_malformed_expression_fails_rendering() -> None:
    with pytest.raises(TemplateError):
        await render({"a": ["${ secrets.not-valid }"]}, Resolver({}))


async def test_a_resolver_error_propagates_unchanged() -> None:
    class Missing(Exception):
        pass

    async def resolve(ref: Ref) -> Any:
        raise Missing(ref.path[0])

    with pytest.raises(Missing, match="GONE"):
        await render({"a": "x ${ secrets.GONE } y"}, resolve)


async def test_expressions_beside_plain_items_in_lists_and_nested_dicts_are_rendered_in_order() -> None:
    resolve = Resolver({("secrets", "A"): "a-1", ("secrets", "B"): {"deep": True}})
    config = {
        "n": 1,
        "list": [None, "${ secrets.A }", 2.5, {"k": "x-${ secrets.A }", "b": False}, ["${ secrets.B }"], "$${ lit }"],
        "plain": "no expression $ { here }",
        "last": "${ secrets.B }",
    }
    assert await render(config, resolve) == {
        "n": 1,
        "list": [None, "a-1", 2.5, {"k": "x-a-1", "b": False}, [{"deep": True}], "${ lit }"],
        "plain": "no expression $ { here }",
        "last": {"deep": True},
    }
    assert resolve.calls == [("secrets", ("A",)), ("secrets", ("A",)), ("secrets", ("B",)), ("secrets", ("B",))]


async def test_a_config_without_expressions_comes_back_as_an_equal_copy() -> None:
    config: dict[str, Any] = {"status": 200, "body": {"received": True, "tags": ["a", 1, None]}}
    rendered = await render(config, Resolver({}))
    assert rendered == config
    assert rendered is not config and rendered["body"] is not config["body"]
    assert rendered["body"]["tags"] is not config["body"]["tags"]
