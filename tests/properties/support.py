"""Shared by the property tests: hypothesis settings for a small CI machine, and a way to run the
engine's async rendering without an event loop (its resolvers never really wait)."""

from collections.abc import Coroutine
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings

T = TypeVar("T")

# No per-example deadline: two shared cores make timings noisy, and a slow example is not a bug here.
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Drive a coroutine that never suspends (its awaits finish at once) to its result."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coroutine.close()
    raise AssertionError("the coroutine suspended; these properties expect resolvers that answer at once")
