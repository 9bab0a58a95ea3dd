"""What the API commands of `backend-secrets` share: configuration, the HTTP client, exit codes, input.

Configuration, first found wins:
- API URL: `--api-url`, BACKEND_SECRETS_API_URL, `api_url` in the config file, http://127.0.0.1:8080;
- token: BACKEND_SECRETS_TOKEN, `token` in the config file (a project's dashboard token); the
  admin commands (`projects create|delete`) use BACKEND_SECRETS_ADMIN_TOKEN or `admin_token` first;
- project: `--project`, BACKEND_SECRETS_PROJECT, `project` in the config file.
The config file is `--config PATH`, else $XDG_CONFIG_HOME/backend-secrets/config.json (default
~/.config/backend-secrets/config.json), a JSON object. A token is never taken from the command line
(it would show in `ps` and the shell history), and neither is a value: values come from standard
input or a hidden prompt.

Exit codes scripts can rely on: see `ExitCode`.
"""

import enum
import getpass
import json
import stat
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

DEFAULT_API_URL: Final = "http://127.0.0.1:8080"
TIMEOUT_S: Final = 60.0
CONFIG_KEYS: Final = frozenset({"api_url", "token", "admin_token", "project"})


class ExitCode(enum.IntEnum):
    OK = 0
    API_ERROR = 1  # the API refused or failed (400, 409, 413, 415, 422, 5xx, ...)
    USAGE = 2  # bad arguments, missing or broken configuration, empty input
    NOT_FOUND = 3  # 404: no such project, secret, credential, ...
    DENIED = 4  # 401/403: missing, unknown or wrong token
    CONFLICT = 5  # 412 (If-Match no longer matches) or 409 (already exists, rotation blocked, ...)
    UNREACHABLE = 6  # no answer from the API URL
    INTERRUPTED = 130  # Ctrl-C


EXIT_CODES_HELP: Final = (
    "exit codes: 0 ok, 1 API error, 2 usage or configuration error, 3 not found, 4 token refused (401/403), "
    "5 conflict or version mismatch (409/412), 6 service unreachable, 130 interrupted"
)


class CliError(Exception):
    def __init__(self, code: ExitCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _status_exit(status: int) -> ExitCode:
    if status == 404:
        return ExitCode.NOT_FOUND
    if status in (401, 403):
        return ExitCode.DENIED
    if status in (409, 412):
        return ExitCode.CONFLICT
    return ExitCode.API_ERROR


@dataclass(frozen=True, slots=True)
class Config:
    api_url: str
    token: str | None
    admin_token: str | None
    project: str | None
    source: str  # where the file settings came from, for messages

    def __repr__(self) -> str:
        return f"Config(api_url={self.api_url!r}, project={self.project!r}, tokens=<hidden>)"

    def need_project(self) -> str:
        if not self.project:
            raise CliError(
                ExitCode.USAGE,
                'which project? pass --project, set BACKEND_SECRETS_PROJECT, or put "project" in ' + self.source,
            )
        return self.project

    def need_token(self, *, admin: bool = False) -> str:
        token = (self.admin_token or self.token) if admin else self.token
        if token:
            return token
        if admin:
            hint = 'set BACKEND_SECRETS_ADMIN_TOKEN (or "admin_token" in the config file)'
        else:
            hint = 'set BACKEND_SECRETS_TOKEN to the project\'s dashboard token (or "token" in the config file)'
        raise CliError(ExitCode.USAGE, f"no token: {hint}; tokens are never taken from the command line")


def default_config_path(environ: Mapping[str, str]) -> Path:
    base = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "backend-secrets" / "config.json"


def load_config(explicit: Path | None, api_url: str | None, project: str | None, environ: Mapping[str, str]) -> Config:
    path = explicit or default_config_path(environ)
    settings = _read_config_file(path, required=explicit is not None)
    return Config(
        api_url=(api_url or environ.get("BACKEND_SECRETS_API_URL") or settings.get("api_url") or DEFAULT_API_URL),
        token=environ.get("BACKEND_SECRETS_TOKEN") or settings.get("token"),
        admin_token=environ.get("BACKEND_SECRETS_ADMIN_TOKEN") or settings.get("admin_token"),
        project=project or environ.get("BACKEND_SECRETS_PROJECT") or settings.get("project"),
        source=str(path),
    )


def _read_config_file(path: Path, *, required: bool) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if required:
            raise CliError(ExitCode.USAGE, f"config file {path} does not exist") from None
        return {}
    except OSError as exc:
        raise CliError(ExitCode.USAGE, f"config file {path} cannot be read: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(ExitCode.USAGE, f"config file {path} is not valid JSON: {exc.msg} (line {exc.lineno})") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise CliError(ExitCode.USAGE, f"config file {path} must be a JSON object of strings")
    unknown = sorted(set(data) - CONFIG_KEYS)
    if unknown:
        warn(
            f"config file {path}: ignoring unknown keys {', '.join(unknown)} (known: {', '.join(sorted(CONFIG_KEYS))})"
        )
    if ("token" in data or "admin_token" in data) and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        warn(f"config file {path} holds a token and is readable by others: chmod 600 {path}")
    return data


def warn(message: str) -> None:
    print(f"backend-secrets: {message}", file=sys.stderr)


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes
    content_type: str

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class ApiClient:
    def __init__(self, api_url: str, token: str) -> None:
        self._base = api_url.rstrip("/")
        self._token = token

    def __repr__(self) -> str:
        return f"ApiClient({self._base!r}, <token hidden>)"

    def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        url = self._base + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json", **(headers or {})}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if not url.startswith(("http://", "https://")):
            raise CliError(ExitCode.USAGE, f"the API URL must start with http:// or https://, not {self._base!r}")
        request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310 - checked
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310 - checked above
                return Answer(response.status, response.read(), response.headers.get_content_type())
        except urllib.error.HTTPError as exc:
            raise _api_error(exc.code, exc.read()) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            raise CliError(
                ExitCode.UNREACHABLE,
                f"cannot reach the API at {self._base}: {reason} (is it running? set BACKEND_SECRETS_API_URL)",
            ) from None

    def path(self, *parts: str) -> str:
        return "/" + "/".join(urllib.parse.quote(part, safe="") for part in parts)


def _api_error(status: int, raw: bytes) -> CliError:
    try:
        error = json.loads(raw)["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        code, message = "http_error", f"HTTP {status}"
    hint = {
        401: " (check BACKEND_SECRETS_TOKEN)",
        403: " (this command needs another kind of token)",
    }.get(status, "")
    return CliError(_status_exit(status), f"{message} [{code}, HTTP {status}]{hint}")


def read_secret_text(what: str, *, confirm: bool = True) -> str:
    """A value from standard input (one trailing newline dropped) or, at a terminal, a hidden prompt."""
    if not sys.stdin.isatty():
        text = sys.stdin.read()
        text = text[:-2] if text.endswith("\r\n") else text[:-1] if text.endswith("\n") else text
    else:
        text = getpass.getpass(f"{what} (input hidden): ")
        if confirm and text and getpass.getpass(f"{what} again: ") != text:
            raise CliError(ExitCode.USAGE, "the two entries differ; nothing was changed")
    if not text:
        raise CliError(ExitCode.USAGE, f"{what} is empty; nothing was changed")
    return text
