"""A counter and a histogram that share their labels, as both programs keep them (requests, executions).

prometheus_client's `labels()` checks its arguments and takes a lock on every call; the child it
returns for a set of label values stays the same for the registry's life, so each is looked up once.
Label values must come from a bounded set (routes, statuses), as they must for Prometheus anyway.
"""

from prometheus_client import Counter, Histogram


class CountAndTime:
    def __init__(self, counter: Counter, histogram: Histogram) -> None:
        self._counter, self._histogram = counter, histogram
        self._series: dict[tuple[str, ...], tuple[Counter, Histogram]] = {}

    def observe(self, labels: tuple[str, ...], seconds: float) -> None:
        count, duration = self._series.get(labels) or self._labelled(labels)
        count.inc()
        duration.observe(seconds)

    def _labelled(self, labels: tuple[str, ...]) -> tuple[Counter, Histogram]:
        series = self._series[labels] = (self._counter.labels(*labels), self._histogram.labels(*labels))
        return series
