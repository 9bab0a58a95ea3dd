"""Timestamps as the API shows them: RFC 3339, UTC, with a Z (always microseconds, so they sort as text)."""

from datetime import UTC, datetime


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def rfc3339(unix: float) -> str:
    """A Unix time in the same form as `now_rfc3339`."""
    return datetime.fromtimestamp(unix, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_rfc3339(text: str) -> str:
    """Any RFC 3339 time with an offset, in the stored form (UTC, microseconds, Z); ValueError otherwise."""
    parsed = datetime.fromisoformat(text.strip().replace("z", "Z").replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("an RFC 3339 time needs an offset (Z or +hh:mm)")
    return parsed.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
