"""Masking: every value that came from a secret becomes `***` wherever the engine writes text.

Besides the value itself, the forms it commonly takes in text are masked too: base64 (standard
and URL-safe, padded or not), URL-encoded and JSON-escaped. Outbound requests carry real values;
only what the engine records, logs or answers goes through here.
"""

import base64
import json
import re
from typing import Any
from urllib.parse import quote, quote_plus

from yarl import URL

MASK = "***"


def _forms(value: str) -> set[str]:
    raw = value.encode("utf-8")
    encoded = {base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()}
    encoded |= {form.rstrip("=") for form in encoded}
    # URL-encoded as urllib writes a path ("/" stays), and as aiohttp (yarl) sends a query and a path.
    url = URL.build(path="/" + value, query={"k": value})
    encoded |= {quote(value), url.raw_query_string[2:], url.raw_path[1:]}
    escaped = json.dumps(value)[1:-1]
    return {
        value,
        escaped,
        json.dumps(value, ensure_ascii=False)[1:-1],
        quote(value, safe=""),
        quote_plus(value),
    } | encoded


class Masker:
    """Built from the values an execution revealed; masks strings and JSON-like structures."""

    def __init__(self, values: set[str]) -> None:
        forms = {form for value in values if value for form in _forms(value)}
        # Longest first, so a value's base64 is masked whole rather than around a shorter match.
        ordered = sorted(forms, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def text(self, text: str) -> str:
        return self._pattern.sub(MASK, text) if self._pattern is not None else text

    def data(self, data: Any) -> Any:
        if self._pattern is None:
            return data
        if isinstance(data, str):
            return self.text(data)
        if isinstance(data, dict):
            return {self.text(str(k)): self.data(v) for k, v in data.items()}
        if isinstance(data, list | tuple):
            return [self.data(v) for v in data]
        return data
