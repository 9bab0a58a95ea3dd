"""The app factory: every resource is opened and closed in its own cleanup context, in order.

storage (SQLite: writer and reader connections, migrations) -> redis -> writer and relay tasks.
A context's cleanup runs only if it started, so a failed start-up closes exactly what opened.
"""

import asyncio
import contextlib
import logging
import os
import secrets as random
import signal
from collections.abc import AsyncIterator
from functools import partial
from typing import Final

import aiosqlite
from aiohttp import web

from contract import redis_clients
from contract.events import decode_event
from contract.streams import Streams
from contract.tasks import cancel_and_wait
from service.auth import Authenticator
from service.dispatch import Dispatcher, queue_client
from service.errors import ApiError, error_middleware
from service.keyring import KeyRing
from service.keystore import Keystore
from service.maintenance import maintenance_ctx
from service.metrics import ServiceMetrics
from service.observability import metrics_ctx, observe_middleware
from service.refusals import RefusalLimiter, refusals_middleware
from service.relay import OutboxRelay
from service.results import ResultsReader, results_client
from service.revisions import ProjectRevisions
from service.routes import (
    audit,
    credentials,
    engine,
    engine_executions,
    executions,
    frontend_vars,
    health,
    hooks,
    observability,
    pages,
    projects,
    secrets,
    session,
    workflows,
)
from service.sessions import CookieSessions
from service.settings import Settings
from service.state import (
    AUTH,
    DISPATCH,
    KEYRING,
    METRICS,
    ORIGIN,
    READER,
    REDIS,
    RELAY,
    REVISIONS,
    SETTINGS,
    WORKFLOWS,
    WRITER,
)
from service.store.db import connect
from service.store.migrations import migrate
from service.store.writer import OutboxEntry, Writer, flush_cleanup
from service.workflow_cache import WorkflowCache

log = logging.getLogger("service")
CLEANUP_IDLE_S = 1.0


async def _instance_id(conn: aiosqlite.Connection) -> str:
    """A random id made once per database, stamped on its events as their origin."""
    await conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('instance_id', ?)", (random.token_hex(8),))
    async with conn.execute("SELECT value FROM meta WHERE key = 'instance_id'") as cursor:
        row = await cursor.fetchone()
    assert row is not None
    return str(row[0])


async def storage_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    setup_conn = await connect(settings.db_path, busy_timeout_ms=settings.sqlite_busy_timeout_ms)
    try:  # migrations on a connection of their own; the writer opens its own when it starts
        await migrate(setup_conn)
        app[ORIGIN] = await _instance_id(setup_conn)
    finally:
        await setup_conn.close()
    reader = await connect(settings.db_path, busy_timeout_ms=settings.sqlite_busy_timeout_ms, readonly=True)
    app[READER] = reader
    app[AUTH] = Authenticator(reader, settings.admin_token, CookieSessions(reader))
    app[WORKFLOWS] = WorkflowCache(reader)
    app[REVISIONS] = ProjectRevisions(reader)
    app[WRITER] = Writer(
        settings.db_path,
        on_commit=partial(_committed, app),
        busy_timeout_ms=settings.sqlite_busy_timeout_ms,
        on_crash=_stop_after_crash,
    )
    yield
    await reader.close()


def _committed(app: web.Application, entries: list[OutboxEntry]) -> None:
    """On the event loop, right after a commit and before its writes are answered."""
    events = [decode_event(entry.payload) for entry in entries]  # once, for both caches
    app[WORKFLOWS].committed(events)  # first: a webhook after a save's 2xx runs what was saved
    app[REVISIONS].committed(events)  # and is stamped with the revision that save made
    app[RELAY].committed(entries)


async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    client = redis_clients.from_url(app[SETTINGS].redis_url, socket_connect_timeout=2, socket_timeout=5)
    app[REDIS] = client
    yield
    await client.aclose()


async def tasks_ctx(app: web.Application) -> AsyncIterator[None]:
    settings, writer = app[SETTINGS], app[WRITER]
    relay = OutboxRelay(
        app[REDIS], Streams(settings.stream_prefix).events, app[ORIGIN], settings.events_maxlen, writer.mark_published
    )
    app[RELAY] = relay
    await relay.load_unpublished(app[READER])
    await writer.start()
    tasks = [
        asyncio.create_task(relay.run(), name="relay"),
        asyncio.create_task(_idle_cleanup(writer), name="outbox-cleanup"),
    ]
    for task in tasks:
        task.add_done_callback(_stop_if_crashed)
    yield
    await _drain(app)
    for task in tasks:
        await cancel_and_wait(task)
    await writer.stop()


def _stop_if_crashed(task: "asyncio.Task[None]") -> None:
    """Without its writer or relay the service would answer but never commit or publish: stop it,
    gracefully, so a supervisor restarts it (the outbox keeps what was committed)."""
    if task.cancelled() or task.exception() is None:
        return
    log.critical("background task %s crashed; stopping the service", task.get_name(), exc_info=task.exception())
    os.kill(os.getpid(), signal.SIGTERM)


def _stop_after_crash(exc: BaseException) -> None:
    log.critical("the writer stopped on an unexpected error; stopping the service", exc_info=exc)
    os.kill(os.getpid(), signal.SIGTERM)


async def _idle_cleanup(writer: Writer) -> None:
    """Published outbox rows go with the next batch; when no batch comes, with an empty one."""
    while True:
        await asyncio.sleep(CLEANUP_IDLE_S)
        if writer.cleanup_due:
            with contextlib.suppress(ApiError):  # a busy database: the next round (or batch) cleans up
                await flush_cleanup(writer)


async def _drain(app: web.Application, timeout_s: float = 2.0) -> None:
    """On shutdown give the relay a moment to publish what was committed (the outbox keeps the rest)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while app[RELAY].backlog and loop.time() < deadline:  # noqa: ASYNC110 - bounded wait, no event to await
        await asyncio.sleep(0.01)


async def dispatch_ctx(app: web.Application) -> AsyncIterator[None]:
    """Executions are queued through a Redis client of their own that fails fast (see
    service.dispatch); workers' reports come back on the results stream (see service.results)."""
    settings, streams = app[SETTINGS], Streams(app[SETTINGS].stream_prefix)
    client, reports_client = queue_client(settings.redis_url), results_client(settings.redis_url)
    dispatcher = app[DISPATCH] = Dispatcher(
        client, app[WRITER], app[REVISIONS], app[AUTH], settings, streams.executions
    )
    reader = ResultsReader(reports_client, streams.results, app[WRITER], dispatcher)
    task = asyncio.create_task(reader.run(), name="results-reader")
    task.add_done_callback(_stop_if_crashed)
    yield
    await cancel_and_wait(task)
    await client.aclose()
    await reports_client.aclose()


# A request line or header longer than aiohttp's 8 KiB default is refused before the app sees it,
# with a plain-text 400 outside the API's error shape: a long audit filter query reached it (the
# fuzzer found one). 64 KiB keeps any reasonable URL inside the API.
PROTOCOL_LIMITS: Final = {"max_line_size": 65_536, "max_field_size": 65_536}


def create_app(settings: Settings) -> web.Application:
    # Outermost first: the id and metrics see every answer; refusals are audited from the error's answer.
    middlewares = [observe_middleware, refusals_middleware(RefusalLimiter()), error_middleware]
    app = web.Application(
        middlewares=middlewares, client_max_size=settings.max_body_bytes, handler_args=PROTOCOL_LIMITS
    )
    app[SETTINGS] = settings
    app[KEYRING] = KeyRing(settings.master_keys, Keystore(settings.keystore))
    app[METRICS] = ServiceMetrics()
    app.cleanup_ctx.extend([storage_ctx, redis_ctx, tasks_ctx, dispatch_ctx, metrics_ctx, maintenance_ctx])
    for module in (
        health,
        projects,
        secrets,
        engine,
        workflows,
        executions,
        hooks,
        engine_executions,
        frontend_vars,
        credentials,
        session,
        pages,
        observability,
        audit,
    ):
        app.router.add_routes(module.routes)
    return app
