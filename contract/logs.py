"""Log lines of both programs: one JSON object per line (or plain text), with request and execution ids.

`BACKEND_SECRETS_LOG_FORMAT` is `json` (the default) or `text`; `BACKEND_SECRETS_LOG_LEVEL` is a
level name (default `info`). A JSON line has `timestamp` (RFC 3339 UTC), `level`, `logger` and
`message`, then `request_id` / `execution_id` when the code that logged runs inside a request
(set by the service's middleware) or an execution (set by the worker's consumer), then whatever
the call passed as `extra=`, and `exception` with the traceback. Newlines inside a field are
escaped, so a line is always one record.

Nothing here knows what a value is: the rule belongs to the callers. No log call formats a secret
or credential value, only names, versions, ids and error codes.
"""

import json
import logging
import sys
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Final

from contract.config import ConfigError, read_env

LOG_FORMAT: Final = "BACKEND_SECRETS_LOG_FORMAT"
LOG_LEVEL: Final = "BACKEND_SECRETS_LOG_LEVEL"
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
EXECUTION_ID: ContextVar[str | None] = ContextVar("execution_id", default=None)

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD_ATTRS: Final = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
}


def context_ids() -> dict[str, str]:
    ids = {"request_id": REQUEST_ID.get(), "execution_id": EXECUTION_ID.get()}
    return {key: value for key, value in ids.items() if value is not None}


def _timestamp(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {key: value for key, value in record.__dict__.items() if key not in _STANDARD_ATTRS}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "timestamp": _timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(context_ids())
        line.update(_extras(record))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str)  # ASCII only: no character a reader could take for a line break


class TextFormatter(logging.Formatter):
    """The classic line, with the request or execution id appended when there is one."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        ids = " ".join(f"{key}={value}" for key, value in context_ids().items())
        return f"{text} [{ids}]" if ids else text


def _formatter(environ: Mapping[str, str]) -> logging.Formatter:
    chosen = (read_env(environ, LOG_FORMAT) or "json").strip().lower()
    if chosen == "json":
        return JsonFormatter()
    if chosen == "text":
        return TextFormatter()
    raise ConfigError(f"{LOG_FORMAT} must be 'json' or 'text', got {chosen!r}")


def _level(environ: Mapping[str, str]) -> int:
    name = (read_env(environ, LOG_LEVEL) or "info").strip().upper()
    level = logging.getLevelNamesMapping().get(name)
    if level is None:
        raise ConfigError(f"{LOG_LEVEL} must be a level name such as 'info' or 'warning', got {name.lower()!r}")
    return level


def configure_logging(environ: Mapping[str, str]) -> None:
    """One handler on the root logger, writing to stderr in the configured format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_formatter(environ))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(_level(environ))
    logging.captureWarnings(True)  # warnings become log lines too, not raw text on stderr
