"""`python -m worker --check` (`backend-secrets worker --check`): the container health check.

A client of the running worker's own /healthz (worker/metrics.py), which answers 200 while the
worker follows the events stream: a worker that lost the stream cannot keep its caches honest.
Exit 0 healthy, 1 unhealthy or not running, 2 nothing to check (the metrics server is off).
"""

import urllib.error
import urllib.request

from worker.settings import WorkerSettings

TIMEOUT_S = 2.0


def healthz_url(settings: WorkerSettings) -> str:
    host = settings.metrics_host
    if host in ("", "0.0.0.0"):  # noqa: S104 - a bind-all address, mapped to loopback to connect
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return (
        f"http://[{host}]:{settings.metrics_port}/healthz"
        if ":" in host
        else f"http://{host}:{settings.metrics_port}/healthz"
    )


def check(settings: WorkerSettings, timeout_s: float = TIMEOUT_S) -> tuple[int, str]:
    if settings.metrics_port == 0:
        return 2, "BACKEND_SECRETS_WORKER_METRICS_PORT is 0: the worker serves no /healthz to check"
    url = healthz_url(settings)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never through a proxy
    try:
        with opener.open(url, timeout=timeout_s):
            return 0, f"ok: {url}"
    except urllib.error.HTTPError as exc:
        return 1, f"{url} answered {exc.code}: the worker is not following the events stream"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return 1, f"nothing answers at {url} ({reason}): is the worker running?"
