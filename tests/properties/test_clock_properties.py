"""`service.clock` formats a Unix time exactly as datetime does (UTC, microseconds, Z), for any time
the API stores, including half-microsecond ties and the last microsecond of a second, which round
into the next one."""

from datetime import UTC, datetime

from hypothesis import example, given
from hypothesis import strategies as st

from service.clock import now_rfc3339, rfc3339
from tests.properties.support import PROPERTY

LATEST = 253402300799  # UnixTime's bound: 9999-12-31T23:59:59Z


def by_datetime(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@PROPERTY
@given(st.floats(min_value=0, max_value=LATEST - 1, allow_nan=False))
@example(1_700_000_000.9999995)  # rounds up into the next second
@example(1_700_000_000.0000005)
@example(1_000_000_000 + 2.5e-6)  # ties go to even
@example(0.0)
def test_any_stored_time_reads_as_datetime_formats_it(unix: float) -> None:
    assert rfc3339(unix) == by_datetime(unix)


@PROPERTY
@given(st.integers(min_value=0, max_value=LATEST - 1), st.integers(min_value=0, max_value=1_999_999))
def test_each_half_microsecond_of_a_second_reads_as_datetime_formats_it(second: int, halves: int) -> None:
    unix = second + halves / 2_000_000
    assert rfc3339(unix) == by_datetime(unix)


def test_now_is_in_the_same_form() -> None:
    stamp = now_rfc3339()
    assert stamp.endswith("Z") and len(stamp) == len("2026-11-27T12:00:00.000000Z")
    assert abs(datetime.fromisoformat(stamp).timestamp() - datetime.now(UTC).timestamp()) < 5
