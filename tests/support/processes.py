"""Start `python -m service`, `python -m worker` and a private `redis-server` as real processes.

Each process writes its output to a log file in the test's temporary folder, so a test can read
what a user (or an operator) would see in the logs. Everything started here is stopped by the
object that started it, by its own pid.
"""

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import aiohttp
import redis

REPO_ROOT = Path(__file__).resolve().parents[2]
STOP_TIMEOUT_S = 10.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_environ(**overrides: str) -> dict[str, str]:
    """The current environment without any of the project's settings, plus `overrides`."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("BACKEND_SECRETS_") and key not in {"REDIS_URL", "PYTHONPATH"}
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(overrides)
    return env


@dataclass
class Process:
    """One child process whose stdout and stderr go to `log_path`."""

    name: str
    args: list[str]
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        self._log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            self.args, env=self.env, cwd=REPO_ROOT, stdout=self._log, stderr=subprocess.STDOUT
        )

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def log_bytes(self) -> bytes:
        return self.log_path.read_bytes() if self.log_path.exists() else b""

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        """Stop the process (SIGTERM, then SIGKILL after a grace period); returns its exit code."""
        popen, self.popen = self.popen, None
        code: int | None = None
        if popen is not None:
            if popen.poll() is None:
                popen.send_signal(sig)
                try:
                    popen.wait(STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    popen.kill()
                    popen.wait(STOP_TIMEOUT_S)
            code = popen.returncode
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    async def wait_for_log(self, text: str, *, timeout_s: float = 10.0, after: int = 0) -> None:
        """Wait until `text` appears in the log past byte offset `after`."""
        deadline = time.monotonic() + timeout_s
        while text not in self.log_text()[after:]:
            if not self.running:
                raise AssertionError(
                    f"{self.name} exited ({self._returncode()}) before logging {text!r}:\n{self.tail()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} did not log {text!r} within {timeout_s}s:\n{self.tail()}")
            await asyncio.sleep(0.02)

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def _returncode(self) -> int | None:
        return None if self.popen is None else self.popen.returncode


def python_module(name: str, module: str, env: dict[str, str], log_path: Path) -> Process:
    return Process(name=name, args=[sys.executable, "-m", module], env=env, log_path=log_path)


class RedisServer:
    """A private, non-persistent redis-server on a free loopback port, for outage tests."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            raise RuntimeError("redis-server is not installed")
        self.port = port or free_port()
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        args = [executable, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        args += ["--dir", str(workdir), "--daemonize", "no"]
        self.process = Process(name="redis-server", args=args, env=clean_environ(), log_path=workdir / "redis.log")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 5.0) -> None:
        self.process.start()
        deadline = time.monotonic() + timeout_s
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.2)
        try:
            while True:
                try:
                    if client.ping():
                        return
                except redis.RedisError:
                    pass
                if not self.process.running or time.monotonic() > deadline:
                    raise AssertionError(f"redis-server did not start on {self.port}:\n{self.process.tail()}")
                time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        self.process.stop(signal.SIGKILL)

    def restart(self) -> None:
        """The same port, an empty dataset: a Redis that was restarted without persistence."""
        self.stop()
        self.start()


@dataclass
class ServiceProcess:
    process: Process
    port: int
    admin_token: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def wait_healthy(self, timeout_s: float = 15.0) -> None:
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    async with session.get(f"{self.url}/healthz") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                if not self.process.running:
                    raise AssertionError(f"the service exited before it was healthy:\n{self.process.tail()}")
                if time.monotonic() > deadline:
                    raise AssertionError(f"the service was not healthy within {timeout_s}s:\n{self.process.tail()}")
                await asyncio.sleep(0.05)


def service_process(
    tmp: Path, *, redis_url: str, prefix: str, master_key: str, admin_token: str, **extra_env: str
) -> ServiceProcess:
    port = free_port()
    env = clean_environ(
        BACKEND_SECRETS_DB=str(tmp / "backend-secrets.db"),
        REDIS_URL=redis_url,
        BACKEND_SECRETS_MASTER_KEYS=master_key,
        BACKEND_SECRETS_ADMIN_TOKEN=admin_token,
        BACKEND_SECRETS_HOST="127.0.0.1",
        BACKEND_SECRETS_PORT=str(port),
        BACKEND_SECRETS_STREAM_PREFIX=prefix,
        **extra_env,
    )
    process = python_module("service", "service", env, tmp / "service.log")
    return ServiceProcess(process=process, port=port, admin_token=admin_token)


def worker_process(tmp: Path, *, redis_url: str, prefix: str, api_url: str, **extra_env: str) -> Process:
    env = clean_environ(
        REDIS_URL=redis_url, BACKEND_SECRETS_API_URL=api_url, BACKEND_SECRETS_STREAM_PREFIX=prefix, **extra_env
    )
    return python_module("worker", "worker", env, tmp / "worker.log")
