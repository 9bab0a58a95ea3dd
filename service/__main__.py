"""`python -m service`: run the API with settings from the environment."""

import logging
import sys

from aiohttp import web

from contract.config import ConfigError, current_environ
from contract.logs import configure_logging
from contract.loops import new_event_loop
from service.app import create_app
from service.settings import Settings

log = logging.getLogger("service")
# The event loop shares the GIL with the threads that fsync and checkpoint for the writer and read
# SQLite (aiosqlite): a thread that wants it waits up to this long for the loop to let go (5 ms
# by default, which a durable write's answer would wait through after its fsync).
SWITCH_INTERVAL_S = 0.0005


def main() -> int:
    try:
        configure_logging(current_environ())  # JSON lines unless BACKEND_SECRETS_LOG_FORMAT=text
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"backend-secrets service: configuration error: {exc}", file=sys.stderr)
        return 2
    log.info("serving on http://%s:%d", settings.host, settings.port)
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    # print=None: aiohttp's banner is not a log line; the one above says the same.
    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        access_log=None,
        print=None,
        loop=new_event_loop(),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
