"""`python -m worker`: follow the events stream and keep the caches honest until SIGTERM/SIGINT."""

import asyncio
import logging
import signal
import sys

from contract.config import ConfigError
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
        await stop.wait()
    finally:
        log.info("worker stopping")
        await worker.close()


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = WorkerSettings.from_env()
    except ConfigError as exc:
        print(f"backend-secrets worker: configuration error: {exc}", file=sys.stderr)
        return 2
    asyncio.run(serve(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
