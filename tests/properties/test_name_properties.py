"""Names, ids and sizes at their edges, for any input: `contract.names` and `service.validation`
accept exactly what the contract allows, refuse the rest with a 422 of their own code, and never
echo what they refused (a value, or a name that may have been pasted from one).
"""

import pytest
from aiohttp.test_utils import make_mocked_request
from hypothesis import given
from hypothesis import strategies as st

from contract.names import (
    PROJECT_NAME_MAX,
    SECRET_NAME_MAX,
    VALUE_MAX_BYTES,
    is_valid_name,
    is_valid_project_id,
)
from service.errors import ApiError, InvalidField
from service.validation import (
    if_match_version,
    project_id_from_name,
    valid_name,
    valid_project_id,
    valid_project_name,
    valid_value,
)
from tests.properties.support import PROPERTY

NAME_START = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_"
NAME_CHARS = NAME_START + "0123456789"
VALID_NAMES = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from(NAME_START),
    st.text(alphabet=NAME_CHARS, max_size=SECRET_NAME_MAX - 1),
)
# Characters that look like name characters to a human, or to str.isalnum(), but are not ASCII.
LOOKALIKES = st.sampled_from(
    ["é", "ß", "\u0130", "\u0131", "\uff21", "\u0663", "\u00b2", "\u017f", "\u200b", "-", ".", " ", "\n", "$"]
)
MULTIBYTE = st.sampled_from(["é", "€", "😀", "\u2028", "中"])


@PROPERTY
@given(VALID_NAMES)
def test_every_name_of_the_contract_is_accepted(name: str) -> None:
    assert is_valid_name(name) and valid_name(name) == name


@PROPERTY
@given(VALID_NAMES, st.integers(min_value=1, max_value=64))
def test_a_name_over_128_characters_is_refused(name: str, extra: int) -> None:
    long = (name * (SECRET_NAME_MAX // len(name) + 2))[: SECRET_NAME_MAX + extra]
    assert not is_valid_name(long)
    with pytest.raises(InvalidField) as refused:
        valid_name(long)
    assert refused.value.error_code == "invalid_name" and long not in refused.value.message


@PROPERTY
@given(VALID_NAMES, LOOKALIKES, st.integers(min_value=0))
def test_a_name_with_any_other_character_is_refused(name: str, odd: str, where: int) -> None:
    at = where % (len(name) + 1)
    bad = (name[:at] + odd + name[at:])[:SECRET_NAME_MAX]
    if odd not in bad:  # cut off at the end: put it last
        bad = bad[:-1] + odd
    assert not is_valid_name(bad)
    with pytest.raises(InvalidField):
        valid_name(bad)


@PROPERTY
@given(st.text(alphabet="0123456789", min_size=1, max_size=4), st.text(alphabet=NAME_CHARS, max_size=8))
def test_a_name_starting_with_a_digit_is_refused(digits: str, rest: str) -> None:
    assert not is_valid_name(digits + rest)


@PROPERTY
@given(st.text())
def test_any_string_is_a_valid_name_exactly_when_the_contract_says(name: str) -> None:
    expected = 0 < len(name) <= SECRET_NAME_MAX and name[0] in NAME_START and all(c in NAME_CHARS for c in name)
    assert is_valid_name(name) is expected


@PROPERTY
@given(st.integers(min_value=-8, max_value=8), MULTIBYTE, st.booleans())
def test_values_are_measured_in_utf8_bytes_at_the_limit(offset: int, char: str, multibyte: bool) -> None:
    """Around 65,536 bytes, with a multibyte character at the end so characters != bytes."""
    tail = char if multibyte else "a"
    value = "a" * (VALUE_MAX_BYTES + offset - len(tail.encode())) + tail
    size = len(value.encode("utf-8"))
    assert size == VALUE_MAX_BYTES + offset
    if size <= VALUE_MAX_BYTES:
        assert valid_value(value) == value
    else:
        with pytest.raises(InvalidField) as refused:
            valid_value(value)
        assert refused.value.error_code == "value_too_large" and value not in refused.value.message


@PROPERTY
@given(st.text(min_size=1, max_size=256))
def test_any_non_empty_value_within_the_limit_is_accepted_and_never_echoed(value: str) -> None:
    assert valid_value(value) == value


def test_an_empty_value_is_refused() -> None:
    with pytest.raises(InvalidField) as refused:
        valid_value("")
    assert refused.value.error_code == "invalid_value"


@PROPERTY
@given(st.from_regex(r"[a-z0-9][a-z0-9-]{0,62}", fullmatch=True))
def test_every_project_id_of_the_contract_is_accepted(project_id: str) -> None:
    assert is_valid_project_id(project_id) and valid_project_id(project_id) == project_id


@PROPERTY
@given(st.text(max_size=80))
def test_any_string_is_a_valid_project_id_exactly_when_the_contract_says(project_id: str) -> None:
    lowers = "abcdefghijklmnopqrstuvwxyz0123456789"
    expected = 0 < len(project_id) <= 63 and project_id[0] in lowers and all(c in lowers + "-" for c in project_id)
    assert is_valid_project_id(project_id) is expected
    if not expected:
        with pytest.raises(InvalidField) as refused:
            valid_project_id(project_id)
        assert refused.value.error_code == "invalid_project_id"


@PROPERTY
@given(st.text(max_size=300))
def test_an_id_made_from_any_project_name_is_valid(name: str) -> None:
    assert is_valid_project_id(project_id_from_name(name))


@PROPERTY
@given(st.text(max_size=PROJECT_NAME_MAX + 20))
def test_project_names_are_one_to_200_characters_and_not_blank(name: str) -> None:
    if name.strip() and len(name) <= PROJECT_NAME_MAX:
        assert valid_project_name(name) == name
    else:
        with pytest.raises(InvalidField):
            valid_project_name(name)


@PROPERTY
@given(st.integers(min_value=0, max_value=10**12), st.sampled_from(["{}", '"{}"', 'W/"{}"', ' "{}" ']))
def test_if_match_reads_a_version_in_every_usual_spelling(version: int, spelling: str) -> None:
    request = make_mocked_request("PUT", "/", headers={"If-Match": spelling.format(version)})
    assert if_match_version(request) == version


@PROPERTY
@given(st.text(max_size=12))
def test_if_match_is_a_version_or_a_clear_400_for_any_header(raw: str) -> None:
    """Never another exception (which would be a 500): e.g. '²' is a digit to str.isdigit, not to int()."""
    request = make_mocked_request("PUT", "/", headers={"If-Match": raw})
    try:
        version = if_match_version(request)
    except ApiError as exc:
        assert exc.status == 400 and exc.error_code == "invalid_if_match"
        return
    assert isinstance(version, int) and version >= 0
