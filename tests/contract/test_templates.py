"""Parsing `${ }` expressions in workflow configs (contract/templates.py)."""

import pytest

from contract.templates import Ref, TemplateError, parse, refs_in, secret_names_in

pytestmark = pytest.mark.timeout(10)


@pytest.mark.parametrize(
    "template",
    [
        "${ secrets.API_KEY }",
        "${secrets.API_KEY}",
        "${   secrets.API_KEY   }",
        "${ ctx.secrets.API_KEY }",
        "${ctx.secrets.API_KEY}",
    ],
)
def test_both_spellings_of_a_secret_reference_name_the_secret(template: str) -> None:
    (ref,) = parse(template)
    assert isinstance(ref, Ref)
    assert (ref.root, ref.path) == ("secrets", ("API_KEY",))


def test_literal_text_around_references_is_kept_in_order() -> None:
    parts = parse("Bearer ${ secrets.TOKEN }; id=${ctx.secrets.ID}!")
    assert [p if isinstance(p, str) else p.path for p in parts] == ["Bearer ", ("TOKEN",), "; id=", ("ID",), "!"]


def test_a_string_without_expressions_is_one_literal() -> None:
    assert parse("plain {text} $ and } braces") == ("plain {text} $ and } braces",)
    assert parse("") == ()


def test_double_dollar_escapes_a_literal_expression() -> None:
    assert parse("$${ secrets.X }") == ("${ secrets.X }",)
    assert parse("a$${b}c") == ("a${b}c",)


@pytest.mark.parametrize(
    ("template", "root", "path"),
    [
        ("${ input.body.order.id }", "input", ("body", "order", "id")),
        ("${ input.headers.stripe-signature }", "input", ("headers", "stripe-signature")),
        ("${ input.query.q }", "input", ("query", "q")),
        ("${ nodes.fetch.output }", "nodes", ("fetch", "output")),
        ("${ nodes.fetch.output.items.0 }", "nodes", ("fetch", "output", "items", "0")),
    ],
)
def test_other_roots(template: str, root: str, path: tuple[str, ...]) -> None:
    (ref,) = parse(template)
    assert isinstance(ref, Ref) and (ref.root, ref.path) == (root, path)


@pytest.mark.parametrize(
    "template",
    [
        "${ secrets.X",  # unclosed
        "${}",
        "${ }",
        "${ secrets }",
        "${ secrets.1X }",  # a name cannot start with a digit
        "${ secrets.A.B }",
        "${ secrets." + "A" * 129 + " }",
        "${ secrets. X }",
        "${ ctx.secrets }",
        "${ env.X }",  # unknown root
        "${ ctx.env.X }",
        "${ input.cookies.x }",
        "${ input }",
        "${ nodes.a }",
        "${ nodes.a.result }",
        "${ secrets..X }",
        "${ secrets.X[0] }",
    ],
)
def test_malformed_expressions_are_refused_with_the_expression_quoted(template: str) -> None:
    with pytest.raises(TemplateError) as caught:
        parse(template)
    assert "$" in str(caught.value)


def test_secret_names_are_case_sensitive_and_valid_up_to_128() -> None:
    (ref,) = parse("${ secrets." + "a" * 128 + " }")
    assert isinstance(ref, Ref) and ref.path == ("a" * 128,)


def test_refs_in_walks_nested_configs_and_skips_keys() -> None:
    config = {
        "url": "https://api.example/${ input.query.q }",
        "headers": {"Authorization": "Bearer ${ secrets.TOKEN }", "${ secrets.IN_A_KEY }": "x"},
        "list": [1, None, True, "${ctx.secrets.ONE}", ["${ secrets.TWO }-${ secrets.ONE }"]],
    }
    assert [(r.root, r.path) for r in refs_in(config)] == [
        ("input", ("query", "q")),
        ("secrets", ("TOKEN",)),
        ("secrets", ("ONE",)),
        ("secrets", ("TWO",)),
        ("secrets", ("ONE",)),
    ]
    assert secret_names_in(config) == {"TOKEN", "ONE", "TWO"}


def test_refs_in_raises_for_a_malformed_expression_anywhere() -> None:
    with pytest.raises(TemplateError):
        refs_in({"a": [{"b": "${ secrets.1BAD }"}]})
