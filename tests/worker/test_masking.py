"""Masking replaces a secret and its common encodings wherever the engine writes text."""

import base64
import json
import random
import re
from urllib.parse import quote, quote_plus

import pytest
from yarl import URL

from worker import masking
from worker.masking import MASK, Masker

VALUE = 'sk_live_"quoted" value/with+chars&é'


@pytest.mark.parametrize(
    "form",
    [
        VALUE,
        base64.b64encode(VALUE.encode()).decode(),
        base64.urlsafe_b64encode(VALUE.encode()).decode().rstrip("="),
        quote(VALUE, safe=""),
        quote_plus(VALUE),
        json.dumps(VALUE)[1:-1],
    ],
)
def test_every_form_is_masked(form: str) -> None:
    masked = Masker({VALUE}).text(f"before {form} after")
    assert masked == f"before {MASK} after"


def test_nested_data_is_masked_keys_and_values() -> None:
    data = {"headers": {"Authorization": f"Bearer {VALUE}"}, "list": [VALUE, 3], VALUE: True}
    assert VALUE not in json.dumps(Masker({VALUE}).data(data), ensure_ascii=False)


def test_no_values_leaves_text_alone() -> None:
    assert Masker(set()).text("nothing to hide") == "nothing to hide"


# The forms as masking built them with yarl's URL builder (a URL object per value): the cheaper
# construction in worker.masking must give exactly this set.
def forms_built_with_yarl(value: str) -> set[str]:
    raw = value.encode("utf-8")
    encoded = {base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()}
    encoded |= {form.rstrip("=") for form in encoded}
    url = URL.build(path="/" + value, query={"k": value})
    encoded |= {quote(value), url.raw_query_string[2:], url.raw_path[1:]}
    plain = {value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
    return plain | {quote(value, safe=""), quote_plus(value)} | encoded


AWKWARD = " +/=%&#?:;@,!$'()*~._-\"\\\n\t\x00\x7féü€😀\u2028\ufeff"
TRICKY = [
    VALUE, "whsec_" + "0a1b" * 12, "plain-Value_1.2~3", "a b", "a+b", "a/b", "a=b", "100%", "%41", "%2F", "%zz",
    "%", "a&b=c", "#frag", "?q=1", "..", "/../x", "a/./b", ":x", "x:y", "http://h/p?q#f", "ünïcödé", "日本語",
    "😀 ok", "\x00\x01\x1f\x7f", "'\"\\", "~!$'()*,;@", "a\u2028b", "=" * 5, "+" * 3, " " * 2,
]  # fmt: skip


def awkward_values() -> list[str]:
    pairs = [a + b for a in AWKWARD for b in AWKWARD]
    return TRICKY + list(AWKWARD) + pairs + [f"k{c}v{c}" for c in map(chr, range(0x250))]


def test_the_forms_are_those_yarl_and_urllib_write() -> None:
    mismatched = [value for value in awkward_values() if masking._forms(value) != forms_built_with_yarl(value)]
    assert mismatched == []


def test_no_form_is_shorter_than_its_value() -> None:
    """What lets a Masker leave a text shorter than every value alone without looking at it."""
    assert [value for value in awkward_values() if min(map(len, forms_built_with_yarl(value))) < len(value)] == []


def test_a_text_as_long_as_the_shortest_value_is_masked_and_a_shorter_one_is_left() -> None:
    masker = Masker({"long-secret-value", "s3cr3t"})
    assert masker.text("s3cr3t") == MASK
    assert masker.text("s3cr3") == "s3cr3"
    assert masker.text("x long-secret-value s3cr3t") == f"x {MASK} {MASK}"


def regex_masked(text: str, values: set[str]) -> str:
    """Masking as a regular expression does it: one alternation of every form, longest first."""
    forms = {form for value in values if value for form in forms_built_with_yarl(value)}
    pattern = re.compile("|".join(map(re.escape, sorted(forms, key=len, reverse=True))))
    return pattern.sub(MASK, text)


def test_masking_matches_a_regex_alternation_of_the_forms_longest_first() -> None:
    """Overlapping values and forms: the leftmost match wins, then the longest starting there."""
    rng = random.Random(20240611)
    value_sets = [{"abab"}, {"aba", "bab"}, {"ab", "abc", "bca"}, {"a b", "b+a"}, {"é/é", "%C3"}, {"Zm9v", "foo"}]
    fragments = ["a", "b", "c", " ", "+", "%", "/", "é", "Zm9v", "foo", "YWJh", "%20", "%C3%A9", "\\u00e9", "x"]
    for values in value_sets:
        for _ in range(400):
            text = "".join(rng.choice(fragments) for _ in range(rng.randrange(0, 14)))
            assert Masker(values).text(text) == regex_masked(text, values), (values, text)


def test_masking_leaves_no_pattern_in_the_re_module_cache() -> None:
    """`re` keeps what it compiles process-wide: no form of a value may end up there."""
    value = "cache-probe-" + "9f" * 10
    Masker({value}).data({"text": f"{value} {quote(value)} " * 3})
    keys = [key for name in ("_cache", "_cache2") for key in getattr(re, name, {})]
    patterns = [part for key in keys for part in key if isinstance(part, str)]
    assert not [pattern for pattern in patterns if value in pattern or re.escape(value) in pattern]


def test_a_record_of_short_strings_builds_no_forms(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_forms(value: str) -> set[str]:
        raise AssertionError("forms built for a record whose strings are all shorter than the value")

    monkeypatch.setattr(masking, "_forms", no_forms)
    record = {"verified": True, "scheme": "stripe", "timestamp": 1700000000, "tags": ("a", None, 2.5)}
    assert Masker({VALUE}).data(record) == {
        "verified": True, "scheme": "stripe", "timestamp": 1700000000, "tags": ["a", None, 2.5],
    }  # fmt: skip
    with pytest.raises(AssertionError, match="forms built"):
        Masker({VALUE}).text("x" * len(VALUE))


def test_masked_data_is_a_copy_with_text_keys_and_lists() -> None:
    data = {1: (True, None, 2.5, [VALUE]), "short": {"n": 0}}
    masked = Masker({VALUE}).data(data)
    assert masked == {"1": [True, None, 2.5, [MASK]], "short": {"n": 0}}
    assert masked["short"] is not data["short"]
    assert Masker(set()).data(data) is data
