"""Masking: every value that came from a secret becomes `***` wherever the engine writes text.

Besides the value itself, the forms it commonly takes in text are masked too: base64 (standard
and URL-safe, padded or not), URL-encoded and JSON-escaped. Outbound requests carry real values;
only what the engine records, logs or answers goes through here.

A Masker lives for one execution and keeps its values and forms to itself: no cache outside it
holds them. That is also why the forms are not compiled into a regular expression: `re` keeps
every pattern it compiles in a process-wide cache.
"""

import base64
import json
import re
import sys
from typing import Any
from urllib.parse import quote, quote_plus

from yarl import URL

MASK = "***"
# A character some URL or JSON encoding rewrites: all but the always-safe ones, which neither urllib
# nor yarl ever escapes, and JSON escapes only quotes, backslashes, control and non-ASCII characters.
_ESCAPABLE = re.compile(r"[^A-Za-z0-9_.~-]")
# Tuples of types, not unions: isinstance checks them in half the time.
_SEQUENCES = (list, tuple)
_TEXT_OR_MORE = (str, dict, list, tuple)  # what `Masker.data` may change


def _forms(value: str) -> set[str]:
    raw = value.encode("utf-8")
    encoded = {base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()}
    encoded |= {form.rstrip("=") for form in encoded}
    return encoded | (_escaped_forms(value) if _ESCAPABLE.search(value) else {value})


def _escaped_forms(value: str) -> set[str]:
    """The value, URL-encoded and JSON-escaped: each of these is the value itself when it holds no
    character `_ESCAPABLE` matches."""
    # URL-encoded as urllib writes a path ("/" stays), and as aiohttp (yarl) sends a query and a path.
    # (A URL object, as yarl's C quoter takes a third of the time of urllib's `quote` for the same.)
    url = URL.build(path="/" + value, query={"k": value})
    encoded = {quote(value), url.raw_query_string[2:], url.raw_path[1:]}
    escaped = json.dumps(value)[1:-1]
    return {
        value,
        escaped,
        json.dumps(value, ensure_ascii=False)[1:-1],
        quote(value, safe=""),
        quote_plus(value),
    } | encoded


def _advance(text: str, starts: dict[str, int], end: int) -> None:
    """Move each form that started before `end` to its next start; drop the forms no longer found."""
    for form in [form for form, start in starts.items() if start < end]:
        start = text.find(form, end)
        if start < 0:
            del starts[form]
        else:
            starts[form] = start


def _mask_forms(text: str, forms: list[str]) -> str:
    """Left to right, each occurrence of a form becomes MASK, the longest where several start at one
    place (`forms` longest first): what `re.sub` with the forms as one alternation does."""
    starts = {form: start for form in forms if (start := text.find(form)) >= 0}  # keeps longest first
    pieces: list[str] = []
    end = 0
    while starts:
        at = min(starts.values())
        form = next(form for form, start in starts.items() if start == at)
        pieces += (text[end:at], MASK)
        end = at + len(form)
        _advance(text, starts, end)
    return "".join((*pieces, text[end:])) if pieces else text


class Masker:
    """Built from the values an execution revealed; masks strings and JSON-like structures.

    The forms are worked out for the first text that could hold one, so an execution whose records
    hold only short strings never builds them."""

    def __init__(self, values: set[str]) -> None:
        self._values = [value for value in values if value]
        # No form is shorter than its value (escapes and percent-encodings only lengthen it, base64
        # writes each of its UTF-8 bytes as 4/3 characters), so a text shorter than every value holds
        # none. With no values, no text is long enough.
        self._shortest = min(map(len, self._values), default=sys.maxsize)
        self._forms: list[str] | None = None  # longest first, once a text needs them

    def text(self, text: str) -> str:
        if len(text) < self._shortest:
            return text
        return _mask_forms(text, self._forms or self._ordered_forms())

    def _ordered_forms(self) -> list[str]:
        forms = {form for value in self._values for form in _forms(value)}
        # Longest first, so a value's base64 is masked whole rather than around a shorter match.
        self._forms = sorted(forms, key=len, reverse=True)
        return self._forms

    def data(self, data: Any) -> Any:
        if not self._values:
            return data
        if isinstance(data, str):
            return self.text(data)
        # Numbers, booleans and null are taken as they are, without a call.
        if isinstance(data, dict):
            return {self.text(str(k)): self.data(v) if isinstance(v, _TEXT_OR_MORE) else v for k, v in data.items()}
        if isinstance(data, _SEQUENCES):
            return [self.data(v) if isinstance(v, _TEXT_OR_MORE) else v for v in data]
        return data
