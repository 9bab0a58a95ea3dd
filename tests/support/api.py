"""Assertions on what an API client sees."""

import re
from datetime import UTC, datetime
from typing import Any

from aiohttp import ClientResponse

SNAKE_CASE = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")
RFC3339_UTC = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|\+00:00)")


async def expect_error(response: ClientResponse, status: int, code: str | None = None) -> dict[str, str]:
    """The response is `status` with exactly {"error": {"code", "message"}}; returns the inner object."""
    text = await response.text()
    assert response.status == status, f"expected {status}, got {response.status}: {text}"
    assert response.content_type == "application/json", response.content_type
    body = await response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message"}, body
    assert isinstance(error["code"], str) and SNAKE_CASE.fullmatch(error["code"]), error
    assert isinstance(error["message"], str) and error["message"].strip(), error
    if code is not None:
        assert error["code"] == code, error
    return dict(error)


def assert_rfc3339_utc(stamp: Any) -> datetime:
    assert isinstance(stamp, str) and RFC3339_UTC.fullmatch(stamp), stamp
    parsed = datetime.fromisoformat(stamp)
    assert parsed.utcoffset() is not None and parsed.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert parsed.tzinfo is not None
    return parsed.astimezone(UTC)
