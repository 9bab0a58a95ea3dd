"""Masking, for any secret value: once the engine masks a text (or a JSON-like record), no form of
any revealed value is left in it: raw, base64 (standard and URL-safe, padded or not),
URL-encoded (as urllib and as aiohttp's own URL builder write it), or JSON-escaped (as the
standard library, with or without ASCII escapes, and as msgspec write it).

Values here never contain `*`: the mask is `***`, so a value made of stars could reappear in the
mask itself, which reveals nothing.
"""

import base64
import json
from typing import Any
from urllib.parse import quote, quote_plus

import msgspec
from hypothesis import given
from hypothesis import strategies as st
from yarl import URL

from tests.properties.support import PROPERTY
from worker.masking import MASK, Masker

AWKWARD = list("\"'\\/+=%&?#:@;, \n\t\r\x00\x7f\u2028é€😀")
VALUES = st.text(
    alphabet=st.one_of(st.characters(exclude_characters="*", exclude_categories=("Cs",)), st.sampled_from(AWKWARD)),
    min_size=1,
    max_size=48,
)
SURROUNDINGS = st.text(max_size=24)


def forms(value: str) -> dict[str, str]:
    """Every way a value commonly shows up in text."""
    raw = value.encode("utf-8")
    std, url = base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()
    return {
        "raw": value,
        "base64": std,
        "base64_unpadded": std.rstrip("="),
        "base64url": url,
        "base64url_unpadded": url.rstrip("="),
        "url_component": quote(value, safe=""),
        "url_plus": quote_plus(value),
        "url_path": quote(value),
        "url_query": URL.build(query={"k": value}).raw_query_string.removeprefix("k="),
        "url_path_aiohttp": URL.build(path="/" + value).raw_path.removeprefix("/"),
        "json": json.dumps(value)[1:-1],
        "json_unicode": json.dumps(value, ensure_ascii=False)[1:-1],
        "json_msgspec": msgspec.json.encode(value).decode()[1:-1],
    }


FORMS = sorted(forms("x"))


def survivors(masked: str, values: list[str]) -> list[str]:
    """Which forms (by name, never the value) are still in `masked`."""
    return sorted({kind for value in values for kind, form in forms(value).items() if form in masked})


@PROPERTY
@given(VALUES, st.sampled_from(FORMS), SURROUNDINGS, SURROUNDINGS)
def test_no_form_of_a_value_survives_masking(value: str, kind: str, before: str, after: str) -> None:
    masked = Masker({value}).text(before + forms(value)[kind] + after)
    assert not survivors(masked, [value])
    assert MASK in masked


@PROPERTY
@given(st.lists(VALUES, min_size=1, max_size=4), st.lists(st.sampled_from(FORMS), min_size=1, max_size=6))
def test_no_form_of_any_revealed_value_survives_in_a_text_holding_several(values: list[str], kinds: list[str]) -> None:
    text = " | ".join(forms(values[i % len(values)])[kind] for i, kind in enumerate(kinds))
    assert not survivors(Masker(set(values)).text(text), values)


@PROPERTY
@given(VALUES, st.sampled_from(FORMS), SURROUNDINGS)
def test_a_masked_record_holds_no_form_in_its_keys_or_values(value: str, kind: str, around: str) -> None:
    form = forms(value)[kind]
    record: Any = {
        "status": 200,
        "headers": {"Authorization": f"Bearer {form}", form: around},
        "json": [around + form, {"nested": form + around}, 3, None, True],
    }
    masked = Masker({value}).data(record)
    assert not [text for text in strings_in(masked) if survivors(text, [value])]
    status, _, listed = masked.values()  # the keys may have been masked too
    assert status == 200 and listed[2:] == [3, None, True]


def strings_in(data: Any) -> list[str]:
    """Every string of a JSON-like structure, keys included (numbers and literals are not text)."""
    if isinstance(data, str):
        return [data]
    if isinstance(data, dict):
        return [text for key, item in data.items() for text in [*strings_in(key), *strings_in(item)]]
    if isinstance(data, list):
        return [text for item in data for text in strings_in(item)]
    return []


@PROPERTY
@given(VALUES, SURROUNDINGS)
def test_text_without_a_value_is_left_alone(value: str, text: str) -> None:
    if not any(form in text for form in forms(value).values()):
        assert Masker({value}).text(text) == text
