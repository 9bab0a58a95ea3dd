"""GET /api/projects/{p}/frontend-vars.env: a dotenv file that python-dotenv reads back exactly."""

import io
import random

import pytest
from aiohttp.test_utils import TestClient
from dotenv import dotenv_values

from service.dotenv_file import render
from tests.conftest import Project

pytestmark = pytest.mark.timeout(30)

NASTY = {
    "PLAIN": "https://api.example.com/v1",
    "DOUBLE_QUOTES": 'say "hello" and ""',
    "SINGLE_QUOTES": "it's 'quoted'",
    "BACKTICKS": "`uname -a`",
    "NEWLINES": "line one\nline two\r\nline three\rend",
    "TRAILING_NEWLINE": "ends with a newline\n",
    "DOLLAR": "price: $5, $HOME, $$, $",
    "DOLLAR_BRACES": "${HOME} and ${NOT_SET:-fallback} and ${",
    "LITERAL_ESCAPED_DOLLAR": "\\${HOME}",
    "HASH": "#not a comment # nor this",
    "HASH_AFTER_SPACE": "value #comment?",
    "BACKSLASHES": "C:\\path\\to\\file \\n is not a newline \\\\ two",
    "BACKSLASH_QUOTE": 'ends in backslash \\" quote \\',
    "TRAILING_BACKSLASH": "ends with \\",
    "EQUALS": "a=b=c",
    "SPACES": "  leading and trailing  ",
    "TABS": "\tindented\twith tabs\t",
    "UNICODE": "héllo wörld · 日本語 · 🔑 · \u200b zero-width",
    "CONTROL": "bell\x07 vtab\x0b ff\x0c",
    "ESCAPE_LOOKALIKES": "\\a \\b \\f \\t \\v \\' \\u00e9",
    "EXPORT_LOOKALIKE": "export X=1",
    "JSON": '{"a": [1, "two", {"b": null}], "c": "\\u00e9"}',
    "ONLY_QUOTE": '"',
    "ONLY_SINGLE": "'",
    "ONLY_DOLLAR": "$",
}


async def test_export_round_trips_through_python_dotenv(api: TestClient, project: Project) -> None:
    for name, value in NASTY.items():
        response = await api.put(
            f"/api/projects/{project.id}/frontend-vars/{name}", json={"value": value}, headers=project.dashboard
        )
        assert response.status == 201, (name, await response.text())
    exported = await api.get(f"/api/projects/{project.id}/frontend-vars.env", headers=project.dashboard)
    assert exported.status == 200
    assert exported.content_type == "text/plain" and exported.charset == "utf-8"
    text = await exported.text()
    assert dict(dotenv_values(stream=io.StringIO(text))) == NASTY
    assert len([line for line in text.split("\n") if line and not line.startswith("#")]) == len(NASTY)


async def test_export_of_no_vars_is_an_empty_dotenv(api: TestClient, project: Project) -> None:
    exported = await api.get(f"/api/projects/{project.id}/frontend-vars.env", headers=project.dashboard)
    assert exported.status == 200
    assert dotenv_values(stream=io.StringIO(await exported.text())) == {}


async def test_export_needs_the_dashboard_token(api: TestClient, project: Project) -> None:
    assert (await api.get(f"/api/projects/{project.id}/frontend-vars.env")).status == 401
    assert (await api.get(f"/api/projects/{project.id}/frontend-vars.env", headers=project.engine)).status == 403


def test_random_values_round_trip() -> None:
    alphabet = [*"$${}\\\"'`\n\r\t #=:-abcxyz", "é", "🔑", "\x00", "\x0b", "\u2028"]
    rng = random.Random(20240611)
    for _ in range(3000):
        values = {
            f"V{i}": "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 16))) for i in range(rng.randint(1, 4))
        }
        assert dotenv_values(stream=io.StringIO(render(values.items(), header="a\nheader"))) == values


def test_without_interpolation_everything_but_dollar_brace_reads_back_verbatim() -> None:
    values = {k: v for k, v in NASTY.items() if "${" not in v}
    assert dotenv_values(stream=io.StringIO(render(values.items())), interpolate=False) == values
