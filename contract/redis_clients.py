"""Redis clients for both programs: redis-py over hiredis, with commands packed by hiredis too.

redis-py's asyncio connection packs each command in Python: ~10 µs for an execution request's
XADD, against ~1 µs for the same bytes from `hiredis.pack_command` (measured on this machine).
Every execution sends several commands from each program, so both pack with hiredis. A TLS
(`rediss://`) or Unix socket URL keeps redis-py's own connection classes.
"""

import codecs
from typing import Any, cast
from urllib.parse import urlsplit

import hiredis
import redis.asyncio as redis
from redis.asyncio.connection import Connection
from redis.typing import EncodableT


class HiredisPackedConnection(Connection):
    """A TCP connection whose commands are packed by hiredis (the same bytes as redis-py's)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        encoder = self.encoder
        self._utf8_strict = codecs.lookup(encoder.encoding).name == "utf-8" and encoder.encoding_errors == "strict"

    def pack_command(self, *args: EncodableT) -> list[bytes]:
        name = args[0]
        if not self._utf8_strict:  # hiredis encodes text as strict UTF-8 only
            return super().pack_command(*args)
        if isinstance(name, str | bytes) and name.split()[1:]:
            return super().pack_command(*args)  # "XINFO STREAM": redis-py splits the words
        try:
            return [hiredis.pack_command(cast(Any, args))]
        except TypeError:  # a bytearray, say: hiredis packs str, bytes, int, float and memoryview
            return super().pack_command(*args)


def from_url(url: str, **options: Any) -> redis.Redis:
    """`redis.Redis.from_url`, packing commands with hiredis over plain TCP."""
    if urlsplit(url).scheme == "redis":
        options.setdefault("connection_class", HiredisPackedConnection)
    return redis.Redis.from_url(url, **options)
