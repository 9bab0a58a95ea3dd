"""`backend-secrets worker --check`, the container health check, against a real worker process."""

import subprocess
import sys
from pathlib import Path

from tests.support.processes import Process, RedisServer, clean_environ, free_port
from worker.healthcheck import check
from worker.settings import WorkerSettings

CLI = str(Path(sys.executable).with_name("backend-secrets"))


def health_check(env: dict[str, str]) -> "subprocess.CompletedProcess[str]":
    """The compose health check command, exactly."""
    return subprocess.run([CLI, "worker", "--check"], env=env, capture_output=True, text=True, timeout=10)


def worker_env(redis_url: str, prefix: str, metrics_port: int) -> dict[str, str]:
    return clean_environ(
        REDIS_URL=redis_url,
        BACKEND_SECRETS_API_URL="http://127.0.0.1:9",  # following the stream needs Redis only
        BACKEND_SECRETS_STREAM_PREFIX=prefix,
        BACKEND_SECRETS_WORKER_METRICS_PORT=str(metrics_port),
        BACKEND_SECRETS_LOG_FORMAT="text",
    )


def test_nothing_to_check_when_the_metrics_server_is_off() -> None:
    code, message = check(WorkerSettings(metrics_port=0))
    assert code == 2 and "BACKEND_SECRETS_WORKER_METRICS_PORT" in message


async def test_healthy_while_following_then_not_running(tmp_path: Path, redis_url: str, prefix: str) -> None:
    env = worker_env(redis_url, prefix, free_port())
    worker = Process(name="worker", args=[CLI, "worker"], env=env, log_path=tmp_path / "worker.log")
    worker.start()
    try:
        await worker.wait_for_log("metrics and health on", timeout_s=10)
        await worker.wait_for_log("following", timeout_s=10)
        probe = health_check(env)
        assert probe.returncode == 0, probe.stderr
    finally:
        assert worker.stop() == 0, worker.tail()
    probe = health_check(env)
    assert probe.returncode == 1 and "is the worker running?" in probe.stderr


async def test_unhealthy_once_redis_is_gone(tmp_path: Path, prefix: str) -> None:
    redis_server = RedisServer(tmp_path / "redis")
    redis_server.start()
    env = worker_env(redis_server.url, prefix, free_port())
    worker = Process(name="worker", args=[CLI, "worker"], env=env, log_path=tmp_path / "worker.log")
    worker.start()
    try:
        await worker.wait_for_log("following", timeout_s=10)
        assert health_check(env).returncode == 0
        redis_server.stop()
        await worker.wait_for_log("lost the events stream", timeout_s=10)
        probe = health_check(env)
        assert probe.returncode == 1 and "answered 503" in probe.stderr, probe.stderr
    finally:
        worker.stop()
        redis_server.stop()
