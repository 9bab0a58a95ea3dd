"""The worker's Prometheus metrics and the small loopback server that exposes them with /healthz.

`BACKEND_SECRETS_WORKER_METRICS_PORT` (default 9091; 0: no server) on
`BACKEND_SECRETS_WORKER_METRICS_HOST` (default 127.0.0.1). /healthz answers 200 while the
worker follows the events stream, else 503 (a worker that lost the stream cannot keep its
caches honest). A port already taken is logged and the worker runs on without the server:
several workers on one machine need ports of their own to be scraped.

    backend_secrets_worker_propagation_lag_seconds    histogram: commit (service) -> invalidation (here)
    backend_secrets_worker_events_seen_total          change events applied
    backend_secrets_worker_events_stream_connected    1 while the listener follows the stream
    backend_secrets_worker_cache_{hits,misses,evictions,invalidations,drops}_total
    backend_secrets_worker_cache_{fetches,patches,deltas,delta_fallbacks}_total
    backend_secrets_worker_cache_projects             projects the snapshot cache holds
    backend_secrets_worker_executions_total{status}   executions run here, succeeded / failed / error
    backend_secrets_worker_execution_duration_seconds{status}   histogram
    process_*                                         CPU, memory, file descriptors
"""

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Final, Literal, Protocol

import msgspec
from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from contract.executions import ExecutionRequest, ExecutionResult
from contract.metric_series import CountAndTime
from worker.listener import ChangeListener
from worker.snapshots import SnapshotCache

log = logging.getLogger("worker.metrics")
executions_log = logging.getLogger("worker.executions")

PREFIX: Final = "backend_secrets_worker"
LAG_BUCKETS: Final = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
DURATION_BUCKETS: Final = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
CACHE_COUNTERS: Final = {
    "hits": "Executions that found their project's snapshot cached and current.",
    "misses": "Snapshot reads that found no current snapshot and waited for a fetch or a patch.",
    "evictions": "Projects pushed out of the bounded snapshot cache.",
    "invalidations": "Snapshots dropped because a change event announced a newer revision.",
    "drops": "Times every cached snapshot was dropped (stream lost, events missed, another database).",
    "fetches": "Snapshots fetched from the engine endpoint.",
    "patches": "Snapshots moved to a change event's revision without a fetch.",
    "deltas": "Patches made from a secret.put's engine delta read from Redis.",
    "delta_fallbacks": "Engine deltas missing or not matching their event, so fetched instead.",
}
Run = Callable[[ExecutionRequest, int], Awaitable[ExecutionResult]]


class Observed(Protocol):
    """What the metrics read from the worker: its cache and listener, once started."""

    cache: SnapshotCache | None
    listener: ChangeListener | None


def following(worker: Observed) -> bool:
    return worker.listener is not None and worker.listener.connected.is_set()


class WorkerCollector(Collector):
    """Reads the cache's counters and the listener's state at scrape time."""

    def __init__(self, worker: Observed) -> None:
        self._worker = worker

    def collect(self) -> Iterator[Metric]:
        cache, listener = self._worker.cache, self._worker.listener
        for name, help_text in CACHE_COUNTERS.items():
            yield CounterMetricFamily(f"{PREFIX}_cache_{name}", help_text, value=cache.stats[name] if cache else 0)
        yield GaugeMetricFamily(
            f"{PREFIX}_cache_projects", "Projects the snapshot cache holds.", value=len(cache) if cache else 0
        )
        yield CounterMetricFamily(
            f"{PREFIX}_events_seen", "Change events applied.", value=listener.events_seen if listener else 0
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_events_stream_connected",
            "1 while the listener follows the events stream, else 0.",
            value=1 if following(self._worker) else 0,
        )


class WorkerMetrics:
    def __init__(self, worker: Observed) -> None:
        self.registry = CollectorRegistry()
        self.propagation_lag = Histogram(
            f"{PREFIX}_propagation_lag_seconds",
            "Time from a change's commit in the service to its invalidation in this worker.",
            buckets=LAG_BUCKETS,
            registry=self.registry,
        )
        self.executions = Counter(
            f"{PREFIX}_executions", "Executions run by this worker, by status.", ["status"], registry=self.registry
        )
        self.duration = Histogram(
            f"{PREFIX}_execution_duration_seconds",
            "Time to run an execution's nodes, by status.",
            ["status"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(WorkerCollector(worker))
        ProcessCollector(registry=self.registry)
        self._finished = CountAndTime(self.executions, self.duration)

    def observe_execution(self, status: str, seconds: float) -> None:
        self._finished.observe((status,), seconds)

    def timed(self, run: Run) -> Run:
        """`run`, counted and logged by the status of its result ("error" when it raises)."""

        async def timed_run(request: ExecutionRequest, attempt: int) -> ExecutionResult:
            started, status = time.perf_counter(), "error"
            try:
                result = await run(request, attempt)
                status = result.status
                return result
            finally:
                seconds = time.perf_counter() - started
                self.observe_execution(status, seconds)
                _log_execution(request, attempt, status, seconds)

        return timed_run

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _log_execution(request: ExecutionRequest, attempt: int, status: str, seconds: float) -> None:
    if not executions_log.isEnabledFor(logging.INFO):  # its fields are not even built
        return
    milliseconds = round(seconds * 1000, 3)
    fields = {"project": request.project, "workflow": request.workflow, "attempt": attempt, "status": status}
    fields["duration_ms"] = milliseconds
    executions_log.info("execution %s %s in %.1f ms", request.id, status, milliseconds, extra=fields)


class Health(msgspec.Struct, frozen=True, kw_only=True):
    status: Literal["ok", "not_following"]
    events_stream: Literal["following", "lost"]


def metrics_app(metrics: WorkerMetrics, worker: Observed) -> web.Application:
    async def serve_metrics(request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(request: web.Request) -> web.Response:
        ok = following(worker)
        body = Health(status="ok" if ok else "not_following", events_stream="following" if ok else "lost")
        return web.Response(body=msgspec.json.encode(body), status=200 if ok else 503, content_type="application/json")

    app = web.Application()
    app.router.add_get("/metrics", serve_metrics)
    app.router.add_get("/healthz", healthz)
    return app


@contextlib.asynccontextmanager
async def metrics_server(metrics: WorkerMetrics, worker: Observed, host: str, port: int) -> AsyncIterator[int | None]:
    """Serve /metrics and /healthz on host:port until the block ends; yields the bound port (None: off)."""
    if port == 0:
        yield None
        return
    runner = web.AppRunner(metrics_app(metrics, worker), access_log=None)
    await runner.setup()
    try:
        yield await _start(runner, host, port)
    finally:
        await runner.cleanup()


async def _start(runner: web.AppRunner, host: str, port: int) -> int | None:
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except (OSError, OverflowError) as exc:  # taken, or not a port
        log.warning("metrics server off: cannot listen on %s:%d (%s)", host, port, exc)
        return None
    log.info("metrics and health on http://%s:%d/metrics and /healthz", host, port)
    return port
