"""The service's Prometheus metrics, in a registry of the app's own (tests build many apps).

Labels are only method, the route's canonical path (`/api/projects/{project}/secrets/{name}`,
never the path a client sent) and status: no name, id or value ever becomes a label. The outbox
figures are read from the relay when scraped.

    backend_secrets_http_requests_total{method,route,status}
    backend_secrets_http_request_duration_seconds{method,route,status}     histogram
    backend_secrets_outbox_backlog                     events committed, not yet on the stream
    backend_secrets_outbox_oldest_pending_age_seconds  commit age of the oldest of them (0: none)
    backend_secrets_events_published_total             events the relay put on the stream
    backend_secrets_relay_connected                    1 while the relay reaches Redis
    backend_secrets_writer_batch_size                  histogram: operations per write transaction
    backend_secrets_writer_batch_duration_seconds      histogram: one transaction, BEGIN to answers
    process_*                                          CPU, memory, file descriptors
"""

import time
from collections.abc import Iterator
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from contract.events import decode_event
from contract.metric_series import CountAndTime
from service.relay import OutboxRelay

PREFIX: Final = "backend_secrets"
LATENCY_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS: Final = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class OutboxCollector(Collector):
    """Reads the relay at scrape time; zeros until the relay has started."""

    def __init__(self) -> None:
        self.relay: OutboxRelay | None = None

    def collect(self) -> Iterator[Metric]:
        relay = self.relay
        yield GaugeMetricFamily(
            f"{PREFIX}_outbox_backlog",
            "Events committed to the outbox and not yet published to the events stream.",
            value=relay.backlog if relay else 0,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_outbox_oldest_pending_age_seconds",
            "Seconds since the oldest unpublished event was committed (0 when none waits).",
            value=_oldest_age(relay),
        )
        yield CounterMetricFamily(
            f"{PREFIX}_events_published",
            "Change events the relay published to the events stream since start-up.",
            value=relay.published_total if relay else 0,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_relay_connected",
            "1 while the outbox relay reaches Redis, else 0.",
            value=1 if relay and relay.connected else 0,
        )


def _oldest_age(relay: OutboxRelay | None) -> float:
    entry = relay.oldest_pending() if relay else None
    if entry is None:
        return 0.0
    committed_at = decode_event(entry.payload).committed_at
    return max(0.0, time.time() - committed_at) if committed_at else 0.0


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ("method", "route", "status")  # bounded: known methods, route patterns, statuses
        self.requests = Counter(
            f"{PREFIX}_http_requests", "HTTP requests answered, by route and status.", labels, registry=self.registry
        )
        self.latency = Histogram(
            f"{PREFIX}_http_request_duration_seconds",
            "Time to answer an HTTP request, by route and status.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._answered = CountAndTime(self.requests, self.latency)
        self.batch_size = Histogram(
            f"{PREFIX}_writer_batch_size",
            "Write operations committed together in one SQLite transaction.",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            f"{PREFIX}_writer_batch_duration_seconds",
            "Time of one write transaction, from BEGIN to the answers.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.outbox = OutboxCollector()
        self.registry.register(self.outbox)
        ProcessCollector(registry=self.registry)

    def observe_request(self, method: str, route: str, status: str, seconds: float) -> None:
        self._answered.observe((method, route, status), seconds)

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)

    def watch_outbox(self, relay: OutboxRelay) -> None:
        self.outbox.relay = relay

    def render(self) -> bytes:
        return generate_latest(self.registry)
