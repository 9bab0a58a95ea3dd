"""`python -m service`: run the API with settings from the environment."""

import logging
import sys

from aiohttp import web

from contract.config import ConfigError
from service.app import create_app
from service.settings import Settings


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"backend-secrets service: configuration error: {exc}", file=sys.stderr)
        return 2
    web.run_app(create_app(settings), host=settings.host, port=settings.port, access_log=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
