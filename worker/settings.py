"""Worker settings, read from the environment once. The worker holds no master key."""

from collections.abc import Mapping
from dataclasses import dataclass

from contract.config import current_environ, read_env, read_float, read_int
from contract.executions import RECLAIM_AFTER_MS
from contract.streams import DEFAULT_PREFIX

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_API_URL = "http://127.0.0.1:8080"


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    redis_url: str = DEFAULT_REDIS_URL
    api_url: str = DEFAULT_API_URL
    stream_prefix: str = DEFAULT_PREFIX
    snapshot_cache_projects: int = 1_000
    execution_cache_ttl_s: float = 30.0
    miss_refresh_interval_s: float = 0.25
    fetch_timeout_s: float = 5.0
    listen_block_ms: int = 1_000
    concurrency: int = 16
    reclaim_after_ms: int = RECLAIM_AFTER_MS
    metrics_host: str = "127.0.0.1"  # /metrics and /healthz (worker.metrics)
    metrics_port: int = 9091  # 0: no metrics server

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "WorkerSettings":
        env = current_environ() if environ is None else environ
        return cls(
            redis_url=read_env(env, "REDIS_URL") or DEFAULT_REDIS_URL,
            api_url=(read_env(env, "BACKEND_SECRETS_API_URL") or DEFAULT_API_URL).rstrip("/"),
            stream_prefix=read_env(env, "BACKEND_SECRETS_STREAM_PREFIX", DEFAULT_PREFIX) or DEFAULT_PREFIX,
            snapshot_cache_projects=read_int(env, "BACKEND_SECRETS_SNAPSHOT_CACHE_PROJECTS", 1_000),
            execution_cache_ttl_s=read_float(env, "BACKEND_SECRETS_EXECUTION_CACHE_TTL_S", 30.0),
            miss_refresh_interval_s=read_float(env, "BACKEND_SECRETS_MISS_REFRESH_INTERVAL_S", 0.25),
            fetch_timeout_s=read_float(env, "BACKEND_SECRETS_FETCH_TIMEOUT_S", 5.0),
            concurrency=read_int(env, "BACKEND_SECRETS_WORKER_CONCURRENCY", 16),
            reclaim_after_ms=read_int(env, "BACKEND_SECRETS_RECLAIM_AFTER_MS", RECLAIM_AFTER_MS),
            metrics_host=read_env(env, "BACKEND_SECRETS_WORKER_METRICS_HOST") or "127.0.0.1",
            metrics_port=read_int(env, "BACKEND_SECRETS_WORKER_METRICS_PORT", 9091),
        )
