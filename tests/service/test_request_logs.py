"""Structured request logs: one JSON object per line, the request's id on its lines, never a value."""

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from contract.logs import JsonFormatter
from tests.conftest import Project

FIRST_VALUE = "whsec_log_canary_first_8c1d0e"
SECOND_VALUE = "whsec_log_canary_second_5b7a92"


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """Everything any logger writes during the test, at DEBUG, as the programs format it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    lines = stream.getvalue().splitlines()
    assert lines, "nothing was logged"
    return [json.loads(line) for line in lines]  # fails on any line that is not one JSON object


async def test_put_and_overwrite_log_json_lines_without_the_value(
    api: TestClient, project: Project, log_stream: io.StringIO
) -> None:
    url = f"/api/projects/{project.id}/secrets/STRIPE_WEBHOOK_SIGNING_KEY"
    created = await api.put(url, json={"value": FIRST_VALUE}, headers=project.dashboard)
    overwritten = await api.put(url, json={"value": SECOND_VALUE}, headers=project.dashboard)
    refused = await api.put(url, json={"value": SECOND_VALUE, "extra": FIRST_VALUE}, headers=project.dashboard)
    assert (created.status, overwritten.status, refused.status) == (201, 200, 422)
    assert (await api.delete(url, headers=project.dashboard)).status == 204

    text = log_stream.getvalue()
    assert FIRST_VALUE not in text and SECOND_VALUE not in text
    lines = _lines(log_stream)
    access = [line for line in lines if line["logger"] == "service.access" and line["method"] == "PUT"]
    ids = [created.headers["X-Request-Id"], overwritten.headers["X-Request-Id"], refused.headers["X-Request-Id"]]
    assert [line["request_id"] for line in access] == ids
    assert [line["status"] for line in access] == [201, 200, 422]
    assert {line["route"] for line in access} == {"/api/projects/{project}/secrets/{name}"}
    for line in lines:
        assert {"timestamp", "level", "logger", "message"} <= set(line)
