"""Reading configuration from the environment, once, with the docker-secrets `X_FILE` convention."""

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


class ConfigError(Exception):
    """A setting that is missing or malformed: a start-up error, never a silent default."""


@dataclass(frozen=True, slots=True)
class Secret:
    """A configuration value that must never be printed: its repr and str hide it."""

    _value: str

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__


def read_env(environ: Mapping[str, str], name: str, default: str | None = None) -> str | None:
    """`name` from the environment, else the contents of the file `name_FILE` points to."""
    if name in environ:
        return environ[name]
    path = environ.get(f"{name}_FILE")
    if path is None:
        return default
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{name}_FILE points to {path!r}, which cannot be read: {exc.strerror}") from None


def read_int(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = read_env(environ, name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None


def read_float(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = read_env(environ, name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None


def current_environ() -> Mapping[str, str]:
    return os.environ
