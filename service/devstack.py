"""`backend-secrets dev`: the whole local stack in one command, for a developer's machine.

1. A data folder (./data) with the SQLite file and, unless the environment provides them, a
   generated master key and admin token (files of mode 0600). The token is printed once.
2. Redis at REDIS_URL when it answers; otherwise an embedded Redis-compatible server.
3. The API (`python -m service`) and the worker (`python -m worker`) as child processes in their
   own process group, so a Ctrl-C reaches them once, through this supervisor: SIGINT/SIGTERM stop
   everything; a child that dies stops the rest and the command fails.

Configuration errors exit 2 before anything starts.
"""

import os
import secrets as random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit, urlunsplit

import redis
from cryptography.fernet import Fernet

from contract.config import ConfigError, read_env, read_int
from service.embedded_redis import EmbeddedRedis
from service.settings import MASTER_KEYS, Settings, parse_master_keys

ADMIN_TOKEN = "BACKEND_SECRETS_ADMIN_TOKEN"  # noqa: S105 - the variable's name, not a token
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
TICK_S = 0.1
READY_NOTE_AFTER_S = 30.0
STOP_GRACE_S = 10.0


def say(message: str) -> None:
    print(f"dev: {message}", flush=True)


def is_set(environ: Mapping[str, str], name: str) -> bool:
    return name in environ or f"{name}_FILE" in environ


def write_private(path: Path, text: str) -> None:
    """Create `path` readable by its owner only (0600), refusing to overwrite."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        os.fchmod(fd, 0o600)  # whatever the umask
        file.write(text + "\n")


def read_private(path: Path) -> str:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        say(f"warning: {path} has mode {mode:04o}; only its owner should read it (chmod 600 {path})")
    return path.read_text(encoding="utf-8").strip()


def make_data_dir(data_dir: Path) -> Path:
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the data folder {data_dir}: {exc.strerror}") from None
    say(f"data folder: {data_dir}")
    return data_dir


def master_key_env(environ: Mapping[str, str], data_dir: Path) -> dict[str, str]:
    """The environment's master keys if it has them, else data/master.key (generated on first run)."""
    if is_set(environ, MASTER_KEYS):
        parse_master_keys(read_env(environ, MASTER_KEYS))
        say(f"master keys: from {MASTER_KEYS}")
        return {}
    path = data_dir / "master.key"
    if path.exists():
        try:
            parse_master_keys(read_private(path))
        except ConfigError:
            raise ConfigError(f"{path} does not hold a Fernet key; restore it, or move the data folder away") from None
        say(f"master key: {path} ({MASTER_KEYS} is not set)")
    else:
        write_private(path, Fernet.generate_key().decode())
        say(
            f"{MASTER_KEYS} is not set: generated a master key into {path} (mode 0600). "
            f"Keep it: the secrets in {data_dir} cannot be decrypted without it."
        )
    return {f"{MASTER_KEYS}_FILE": str(path)}


def admin_token_env(environ: Mapping[str, str], data_dir: Path) -> dict[str, str]:
    """The environment's admin token if it has one, else data/admin.token, printed once when generated."""
    if is_set(environ, ADMIN_TOKEN):
        read_env(environ, ADMIN_TOKEN)
        say(f"admin token: from {ADMIN_TOKEN}")
        return {}
    path = data_dir / "admin.token"
    if path.exists():
        if not read_private(path):
            raise ConfigError(f"{path} is empty; delete it and a new admin token is generated")
        say(f"admin token: in {path} (printed when it was generated)")
    else:
        token = random.token_urlsafe(32)
        write_private(path, token)
        say(f"admin token (printed this once; kept in {path}, mode 0600): {token}")
    return {f"{ADMIN_TOKEN}_FILE": str(path)}


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def redis_answers(url: str) -> bool:
    """True when Redis answers PING at `url`, False when nothing listens; ConfigError when it refuses us."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    except ValueError as exc:
        raise ConfigError(f"REDIS_URL {redact(url)!r} is not a Redis URL: {exc}") from None
    try:
        return bool(client.ping())
    except redis.AuthenticationError:
        raise ConfigError(f"Redis at {redact(url)} refused the credentials in REDIS_URL") from None
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False
    except redis.RedisError as exc:
        raise ConfigError(f"Redis at {redact(url)} answered PING with an error: {exc}") from None
    finally:
        client.close()


def check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {host}:{port} ({exc.strerror}); choose another port with --port "
                "or BACKEND_SECRETS_PORT"
            ) from None


def local_url(host: str, port: int) -> str:
    if host in ("", "0.0.0.0"):  # noqa: S104 - a bind-all address, mapped to loopback to connect
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@dataclass
class Plan:
    """What the stack runs: each child's environment, and the addresses to announce."""

    service_env: dict[str, str]
    worker_env: dict[str, str]
    api_url: str
    redis_url: str
    worker_health_url: str | None
    embedded: EmbeddedRedis | None = None


def plan(data_dir: Path, port: int | None, environ: Mapping[str, str]) -> Plan:
    """Check the configuration, prepare the data folder, find or start Redis. ConfigError on a bad setting."""
    env = dict(environ)
    env.setdefault("BACKEND_SECRETS_LOG_FORMAT", "text")  # for a person at a terminal, unless told otherwise
    if port is not None:
        env["BACKEND_SECRETS_PORT"] = str(port)
    host = read_env(env, "BACKEND_SECRETS_HOST", "127.0.0.1") or "127.0.0.1"
    port = read_int(env, "BACKEND_SECRETS_PORT", 8080)
    check_port_free(host, port)
    data_dir = make_data_dir(data_dir.resolve())
    service_env = {**env, **master_key_env(env, data_dir), **admin_token_env(env, data_dir)}
    if not is_set(env, "BACKEND_SECRETS_DB"):
        service_env["BACKEND_SECRETS_DB"] = str(data_dir / "backend-secrets.db")
    Settings.from_env(service_env)  # every other setting of the service, checked before anything starts
    # The worker holds no master key and no admin token.
    worker_env = {k: v for k, v in env.items() if not k.startswith((MASTER_KEYS, ADMIN_TOKEN))}
    api_url = read_env(env, "BACKEND_SECRETS_API_URL") or local_url(host, port)
    worker_env["BACKEND_SECRETS_API_URL"] = api_url
    worker_port = read_int(env, "BACKEND_SECRETS_WORKER_METRICS_PORT", 9091)
    worker_host = read_env(env, "BACKEND_SECRETS_WORKER_METRICS_HOST") or "127.0.0.1"
    worker_health = f"{local_url(worker_host, worker_port)}/healthz" if worker_port else None
    redis_url = read_env(env, "REDIS_URL", DEFAULT_REDIS_URL) or DEFAULT_REDIS_URL
    embedded = None  # started last: nothing after it can fail
    if redis_answers(redis_url):
        say(f"Redis: {redact(redis_url)}")
    else:
        embedded = EmbeddedRedis().start()
        say(
            f"no Redis answers at {redact(redis_url)}: started an embedded Redis-compatible server "
            f"(fakeredis; in memory, gone when dev stops) at {embedded.url}"
        )
        redis_url = embedded.url
    service_env["REDIS_URL"] = worker_env["REDIS_URL"] = redis_url
    return Plan(service_env, worker_env, api_url, redis_url, worker_health, embedded)


@dataclass
class Child:
    name: str
    process: "subprocess.Popen[bytes]"

    @classmethod
    def start(cls, name: str, module: str, env: dict[str, str]) -> "Child":
        # Its own process group: a Ctrl-C in the terminal reaches only this supervisor, which forwards it once.
        command = [sys.executable, "-m", module]
        return cls(name, subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, process_group=0))  # noqa: S603


@dataclass
class Supervisor:
    children: list[Child] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping.is_set():  # a second Ctrl-C: do not wait for a graceful stop
            for child in self.running():
                child.process.kill()
        self.stopping.set()

    def running(self) -> list[Child]:
        return [child for child in self.children if child.process.poll() is None]

    def first_dead(self) -> Child | None:
        return next((child for child in self.children if child.process.poll() is not None), None)

    def stop_all(self) -> None:
        for child in self.running():
            child.process.terminate()
        deadline = time.monotonic() + STOP_GRACE_S
        for child in self.children:
            try:
                child.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                say(f"the {child.name} did not stop within {STOP_GRACE_S:.0f} s; killing it")
                child.process.kill()
                child.process.wait()


def api_ready(api_url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through a proxy
    try:
        with opener.open(f"{api_url}/readyz", timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def announce(stack: Plan) -> None:
    say(f"API     {stack.api_url}   (/api, /variables, /healthz, /readyz, /metrics)")
    say(f"worker  following the events stream on {redact(stack.redis_url)}, fetching from {stack.api_url}")
    if stack.worker_health_url:
        say(f"worker  health {stack.worker_health_url} (and /metrics)")
    say("ready. Ctrl-C stops everything.")


def supervise(stack: Plan, supervisor: Supervisor) -> int:
    if supervisor.stopping.is_set():  # stopped while starting up
        return 0
    supervisor.children.append(Child.start("API", "service", stack.service_env))
    supervisor.children.append(Child.start("worker", "worker", stack.worker_env))
    ready, noted = False, False
    note_at = time.monotonic() + READY_NOTE_AFTER_S
    try:
        while not supervisor.stopping.wait(TICK_S):
            dead = supervisor.first_dead()
            if dead is not None:
                code = dead.process.returncode
                say(f"the {dead.name} exited with code {code}; stopping the rest")
                return 2 if code == 2 else 1
            if not ready and api_ready(stack.api_url):
                ready = True
                announce(stack)
            elif not ready and not noted and time.monotonic() > note_at:
                noted = True
                say(f"the API is not ready after {READY_NOTE_AFTER_S:.0f} s; see its log above")
        say("stopping")
        return 0
    finally:
        supervisor.stop_all()


def run(data_dir: Path, port: int | None = None, environ: Mapping[str, str] | None = None) -> int:
    supervisor = Supervisor()
    handled = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.signal(signum, supervisor.on_signal) for signum in handled}
    stack: Plan | None = None
    try:
        stack = plan(data_dir, port, os.environ if environ is None else environ)
        return supervise(stack, supervisor)
    except ConfigError as exc:
        print(f"backend-secrets dev: configuration error: {exc}", file=sys.stderr)
        return 2
    finally:
        if stack is not None and stack.embedded is not None:
            stack.embedded.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if stack is not None:
            say("stopped")
