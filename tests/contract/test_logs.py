"""The log line format both programs share (contract.logs)."""

import io
import json
import logging
from collections.abc import Iterator

import pytest

from contract.config import ConfigError
from contract.logs import EXECUTION_ID, REQUEST_ID, JsonFormatter, TextFormatter, configure_logging


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("test.contract.logs")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_line_is_one_json_object_with_the_usual_fields(logged: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = logged
    logger.info("saved %s version %d", "STRIPE_KEY", 3)
    (line,) = _lines(stream)
    assert line["level"] == "INFO" and line["logger"] == "test.contract.logs"
    assert line["message"] == "saved STRIPE_KEY version 3"
    assert isinstance(line["timestamp"], str) and line["timestamp"].endswith("Z")
    assert "request_id" not in line and "execution_id" not in line


def test_context_ids_and_extras_are_added(logged: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = logged
    request, execution = REQUEST_ID.set("req-1"), EXECUTION_ID.set("exe-1")
    try:
        logger.warning("slow", extra={"route": "/healthz", "duration_ms": 12.5})
    finally:
        REQUEST_ID.reset(request)
        EXECUTION_ID.reset(execution)
    (line,) = _lines(stream)
    assert line["request_id"] == "req-1" and line["execution_id"] == "exe-1"
    assert line["route"] == "/healthz" and line["duration_ms"] == 12.5


def test_newlines_and_tracebacks_stay_on_one_line(logged: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = logged
    try:
        raise RuntimeError("first\nsecond")
    except RuntimeError:
        logger.exception("it broke\u2028here")
    assert len(stream.getvalue().splitlines()) == 1
    (line,) = _lines(stream)
    assert line["message"] == "it broke\u2028here"
    assert "RuntimeError: first\nsecond" in str(line["exception"])


def test_the_text_format_appends_the_ids() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
    token = REQUEST_ID.set("req-2")
    try:
        assert TextFormatter().format(record).endswith("x: hello [request_id=req-2]")
    finally:
        REQUEST_ID.reset(token)


def test_configure_logging_reads_the_environment() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging({})
        assert isinstance(root.handlers[-1].formatter, JsonFormatter) and root.level == logging.INFO
        configure_logging({"BACKEND_SECRETS_LOG_FORMAT": "text", "BACKEND_SECRETS_LOG_LEVEL": "warning"})
        assert isinstance(root.handlers[-1].formatter, TextFormatter) and root.level == logging.WARNING
        with pytest.raises(ConfigError, match="BACKEND_SECRETS_LOG_FORMAT"):
            configure_logging({"BACKEND_SECRETS_LOG_FORMAT": "xml"})
        with pytest.raises(ConfigError, match="BACKEND_SECRETS_LOG_LEVEL"):
            configure_logging({"BACKEND_SECRETS_LOG_LEVEL": "loud"})
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
