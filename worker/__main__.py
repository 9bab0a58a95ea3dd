"""`python -m worker`: follow the events stream and keep the caches honest until SIGTERM/SIGINT."""

import asyncio
import logging
import signal
import sys
from pathlib import Path

from contract.config import ConfigError, current_environ
from worker import heartbeat
from worker.runtime import Worker
from worker.settings import WorkerSettings

log = logging.getLogger("worker")


async def serve(settings: WorkerSettings, heartbeat_file: Path | None = None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    worker = Worker(settings)
    await worker.start()
    log.info("worker started: API %s, events stream prefix %r", settings.api_url, settings.stream_prefix)
    try:
        async with heartbeat.heartbeat(
            heartbeat_file, lambda: worker.listener is not None and worker.listener.connected.is_set()
        ):
            await stop.wait()
    finally:
        log.info("worker stopping")
        await worker.close()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["--check"]:  # the container health check: is the heartbeat fresh?
        code, message = heartbeat.check(heartbeat.heartbeat_path(current_environ()))
        print(f"backend-secrets worker: {message}", file=sys.stdout if code == 0 else sys.stderr)
        return code
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = WorkerSettings.from_env()
        heartbeat_file = heartbeat.heartbeat_path(current_environ())
    except ConfigError as exc:
        print(f"backend-secrets worker: configuration error: {exc}", file=sys.stderr)
        return 2
    asyncio.run(serve(settings, heartbeat_file))
    return 0


if __name__ == "__main__":
    sys.exit(main())
