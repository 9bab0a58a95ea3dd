"""Secret names and project ids, as the contract spells them."""

import pytest

from contract.names import SECRET_NAME_MAX, VALUE_MAX_BYTES, is_valid_name, is_valid_project_id

pytestmark = pytest.mark.timeout(10)


@pytest.mark.parametrize(
    "name",
    ["A", "_", "_private", "STRIPE_WEBHOOK_SIGNING_KEY", "lower_case", "MiXeD9", "A" * 128, "_" + "9" * 127],
)
def test_valid_names(name: str) -> None:
    assert is_valid_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "A" * 129,
        "1ABC",  # leading digit
        "9",
        "A-B",
        "A.B",
        "A B",
        " A",
        "A\n",  # a trailing newline slips past a `$` anchor
        "\nA",
        "ÄPFEL",  # unicode letters are not [A-Za-z]
        "NAMÉ",
        "名前",
        "A\u0661",  # an Arabic-Indic digit is a unicode \d, not [0-9]
        "\u212a",  # the Kelvin sign: matches [A-Za-z] only under re.IGNORECASE
        "A\x00",
        "${A}",
    ],
)
def test_invalid_names(name: str) -> None:
    assert not is_valid_name(name)


def test_the_limits_are_the_contracts() -> None:
    assert SECRET_NAME_MAX == 128
    assert VALUE_MAX_BYTES == 65_536


@pytest.mark.parametrize("project_id", ["a", "0", "shop", "shop-2", "a" * 63, "0-0", "a-"])
def test_valid_project_ids(project_id: str) -> None:
    assert is_valid_project_id(project_id)


@pytest.mark.parametrize("project_id", ["", "-a", "Shop", "a" * 64, "a_b", "a.b", "a b", "ä", "a\n"])
def test_invalid_project_ids(project_id: str) -> None:
    assert not is_valid_project_id(project_id)
