"""`python -m worker`: follow the events stream and keep the caches honest until SIGTERM/SIGINT."""

import asyncio
import logging
import signal
import sys

from contract import loops
from contract.config import ConfigError, current_environ
from contract.logs import configure_logging
from worker import healthcheck
from worker.metrics import metrics_server
from worker.runtime import Worker
from worker.settings import WorkerSettings

log = logging.getLogger("worker")


async def serve(settings: WorkerSettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    worker = Worker(settings)
    await worker.start()
    log.info("worker started: API %s, events stream prefix %r", settings.api_url, settings.stream_prefix)
    try:
        async with metrics_server(worker.metrics, worker, settings.metrics_host, settings.metrics_port):
            await stop.wait()
    finally:
        log.info("worker stopping")
        await worker.close()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        if args == ["--check"]:  # the container health check: asks the running worker's /healthz
            settings = WorkerSettings.from_env()
            code, message = healthcheck.check(settings)
            print(f"backend-secrets worker: {message}", file=sys.stdout if code == 0 else sys.stderr)
            return code
        configure_logging(current_environ())  # JSON lines unless BACKEND_SECRETS_LOG_FORMAT=text
        settings = WorkerSettings.from_env()
    except ConfigError as exc:
        print(f"backend-secrets worker: configuration error: {exc}", file=sys.stderr)
        return 2
    loops.run(serve(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
