"""A Redis-compatible server in a thread of this process, for `backend-secrets dev` when no Redis answers.

It is fakeredis's TCP server: in memory, gone when the process ends, and good enough for one
developer. Two differences from Redis matter here and are harmless for the dev stack: it trims
streams to MAXLEN exactly (the relay asks for `~`), and a blocked XREAD wakes within ~10 ms
(its handler polls). tests/test_devstack.py checks that the worker's listener follows it.
"""

import threading
from socketserver import StreamRequestHandler
from types import TracebackType
from typing import cast

from fakeredis import TcpFakeServer

LOOPBACK = "127.0.0.1"
SHUTDOWN_POLL_S = 0.1


class EmbeddedRedis:
    """Listens on a free loopback port as soon as it is built; `start()` serves, `stop()` ends it."""

    def __init__(self, port: int = 0) -> None:
        self._server = TcpFakeServer((LOOPBACK, port))
        # It writes each reply of a pipeline on its own: with Nagle's algorithm on, the second one waits
        # for the client's delayed ACK (~40 ms), so a relay round of SET + XADD would take that long.
        handler = cast(type[StreamRequestHandler], self._server.RequestHandlerClass)
        self._server.RequestHandlerClass = type("NoDelayHandler", (handler,), {"disable_nagle_algorithm": True})
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": SHUTDOWN_POLL_S}, name="embedded-redis"
        )
        self._thread.daemon = True

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def start(self) -> "EmbeddedRedis":
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, end every connection's handler, and release the port."""
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "EmbeddedRedis":
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
