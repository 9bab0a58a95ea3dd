"""Housekeeping the writer does on its own: previous values past their overlap window are cleared,
and workflows saved before usage tracking are indexed once (service.store.usage)."""

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Final

from aiohttp import web

from service.state import WRITER
from service.store.secrets import purge_expired_previous
from service.store.usage import backfill_refs

log = logging.getLogger("service.maintenance")
PURGE_EVERY_S: Final = 60.0  # an expired previous value is never served (the engine rows check the time)


async def _purge_forever(app: web.Application) -> None:
    while True:
        await asyncio.sleep(PURGE_EVERY_S)
        try:
            cleared = await app[WRITER].submit(purge_expired_previous(time.time()), durable=False)
        except Exception:  # the next pass tries again
            log.warning("expired previous values could not be cleared this time", exc_info=True)
            continue
        if cleared:
            log.info("cleared %d previous values whose overlap window ended", cleared)


async def maintenance_ctx(app: web.Application) -> AsyncIterator[None]:
    indexed = await app[WRITER].submit(backfill_refs())
    if indexed:
        log.info("indexed the secret references of %d workflows saved before usage tracking", indexed)
    task = asyncio.create_task(_purge_forever(app), name="purge-previous")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
