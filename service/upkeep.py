"""When execution retention and time-outs run: beside a create, not with every one."""

import asyncio
import logging
import math
import time
from collections.abc import Callable
from typing import Final

import msgspec

from service.errors import ApiError
from service.store.executions import Retention

log = logging.getLogger("service.dispatch")

UPKEEP_INTERVAL_S: Final = 1.0


class UpkeepPass(msgspec.Struct, frozen=True, kw_only=True):
    prune: str | None  # the project whose retention bound to apply, if any
    time_out: bool  # mark every project's open executions past their grant's expiry timed out


class Upkeep:
    """When retention and time-outs are due: they run beside a create, not with every one.

    A project is pruned at most once per `interval_s` (half the age bound when that is shorter),
    or after `keep // 10` creates in it, so it holds at most about 10% more than `keep` for a
    moment; open executions past their deadline (every project's) are timed out at most once per
    `interval_s`.
    """

    def __init__(
        self,
        retention: Retention,
        interval_s: float = UPKEEP_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._bounded = retention.keep > 0 or retention.max_age_s > 0
        self._interval_s = min(interval_s, retention.max_age_s / 2) if retention.max_age_s > 0 else interval_s
        self._every = max(1, retention.keep // 10) if retention.keep > 0 else 0
        self._clock = clock
        self._projects: dict[str, tuple[float, int]] = {}  # project -> (last pass, creates since)
        self._timed_out_at = -math.inf

    def due(self, project: str) -> UpkeepPass | None:
        """Called once per create: the pass to run beside it, if one is due."""
        now = self._clock()
        last, creates = self._projects.get(project, (-math.inf, 0))
        prune = self._bounded and (now - last >= self._interval_s or 0 < self._every <= creates + 1)
        self._projects[project] = (now, 0) if prune else (last, creates + 1)
        time_out = now - self._timed_out_at >= self._interval_s
        if time_out:
            self._timed_out_at = now
        if not (prune or time_out):
            return None
        return UpkeepPass(prune=project if prune else None, time_out=time_out)


def log_upkeep_failure(done: "asyncio.Future[None]") -> None:
    exc = None if done.cancelled() else done.exception()
    if isinstance(exc, ApiError):  # bookkeeping: the next pass tries again
        log.warning("execution retention pass failed: %s", exc.message)
    elif exc is not None:
        log.error("execution retention pass failed", exc_info=exc)
