"""Masking replaces a secret and its common encodings wherever the engine writes text."""

import base64
import json
from urllib.parse import quote, quote_plus

import pytest

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
