"""Field rules as 422s that name the field and never echo the value (service/validation.py)."""

import pytest

from service.errors import InvalidField
from service.validation import project_id_from_name, valid_name, valid_project_id, valid_value

pytestmark = pytest.mark.timeout(10)

CANARY = "canary-validation-0c9d"


@pytest.mark.parametrize("value", ["x", "x" * 65_536, "é" * 32_768, "😀" * 16_384, "\x00"])
def test_values_up_to_65536_utf8_bytes_pass(value: str) -> None:
    assert valid_value(value) == value


@pytest.mark.parametrize("value", ["", "x" * 65_537, "é" * 32_769, "😀" * 16_384 + "x", "€" * 21_846])
def test_empty_and_oversized_values_fail(value: str) -> None:
    with pytest.raises(InvalidField) as caught:
        valid_value(value)
    assert caught.value.status == 422


def test_an_oversized_value_is_reported_by_size_not_content() -> None:
    with pytest.raises(InvalidField) as caught:
        valid_value(CANARY * 10_000)
    assert CANARY not in caught.value.message
    assert "65536" in caught.value.message.replace(",", "")


def test_a_value_that_is_not_utf8_encodable_fails() -> None:
    with pytest.raises(InvalidField):
        valid_value("abc\ud800")


def test_name_errors_do_not_echo_the_name_back_as_a_value() -> None:
    with pytest.raises(InvalidField) as caught:
        valid_name("1" + CANARY)
    assert caught.value.status == 422 and CANARY not in caught.value.message


@pytest.mark.parametrize("name", ["Shop", "", "!!!", "Ünïcödé Shop", "a" * 500])
def test_generated_project_ids_are_valid(name: str) -> None:
    assert valid_project_id(project_id_from_name(name))
