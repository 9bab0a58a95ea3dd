"""Timestamps as the API shows them: RFC 3339, UTC, with a Z (always microseconds, so they sort as text).

An execution stamps about five of them, so the date and time of day are formatted once per second
and reused; the microseconds are rounded as datetime.fromtimestamp rounds them (half to even), so
the text is the same as `datetime.fromtimestamp(unix, UTC).isoformat(...)`, at a third of the cost.
"""

import math
import time
from datetime import UTC, datetime

_second_formatted: tuple[int, str] = (-1, "")  # one tuple, so a reader never pairs two seconds


def now_rfc3339() -> str:
    return rfc3339(time.time())


def rfc3339(unix: float) -> str:
    """A Unix time in the same form as `now_rfc3339`."""
    global _second_formatted
    second = math.floor(unix)
    micro = round((unix - second) * 1_000_000)
    if micro == 1_000_000:
        second, micro = second + 1, 0
    cached, prefix = _second_formatted
    if second != cached:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _second_formatted = (second, prefix)
    return f"{prefix}.{micro:06d}Z"


def parse_rfc3339(text: str) -> str:
    """Any RFC 3339 time with an offset, in the stored form (UTC, microseconds, Z); ValueError otherwise."""
    parsed = datetime.fromisoformat(text.strip().replace("z", "Z").replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("an RFC 3339 time needs an offset (Z or +hh:mm)")
    try:
        in_utc = parsed.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+00:09 is before year 1 in UTC (the fuzzer found it)
        raise ValueError("the time is outside years 1 to 9999 in UTC") from None
    return in_utc.isoformat(timespec="microseconds").replace("+00:00", "Z")
