"""Timestamps as the API shows them: RFC 3339, UTC, with a Z."""

from datetime import UTC, datetime


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
