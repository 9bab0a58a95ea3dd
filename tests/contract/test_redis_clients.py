"""Commands packed by hiredis reach a real Redis exactly as redis-py's own packing would."""

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis
from redis.asyncio.connection import Connection

from contract import redis_clients
from contract.redis_clients import HiredisPackedConnection

COMMANDS: list[tuple[object, ...]] = [
    ("XADD", "s", "MAXLEN", "~", 1000, "*", "type", "execution", "n", 42, "f", 2.5, "payload", b"\x00\xff" * 600),
    ("SET", "k", memoryview(b"value")),
    ("SET", "k", bytearray(b"value")),  # a type hiredis does not pack: redis-py's packing
    ("XINFO STREAM", "s"),  # redis-py's two-word command names
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: str(c[0]) + "-" + type(c[-1]).__name__)
def test_packs_the_bytes_redis_py_would(command: tuple[object, ...]) -> None:
    packed = b"".join(HiredisPackedConnection().pack_command(*command))  # type: ignore[arg-type]
    assert packed == b"".join(Connection().pack_command(*command))  # type: ignore[arg-type]


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[redis.Redis]:
    client = redis_clients.from_url(redis_url)
    yield client
    await client.aclose()


async def test_a_client_from_a_redis_url_packs_with_hiredis_and_works(client: redis.Redis, prefix: str) -> None:
    assert client.connection_pool.connection_class is HiredisPackedConnection
    stream = f"{prefix}:packed"
    entry_id = await client.xadd(stream, {"payload": b"\x00\xff" * 600, "n": 42})
    assert await client.xrange(stream) == [(entry_id, {b"payload": b"\x00\xff" * 600, b"n": b"42"})]
    assert (await client.xinfo_stream(stream))["length"] == 1


def test_tls_and_unix_socket_urls_keep_redis_pys_connections() -> None:
    for url in ("rediss://127.0.0.1:6380/0", "unix:///tmp/redis.sock"):
        assert redis_clients.from_url(url).connection_pool.connection_class is not HiredisPackedConnection


def test_a_connection_with_another_text_encoding_packs_as_redis_py_does() -> None:
    command = ("SET", "k", "café")
    packed = b"".join(HiredisPackedConnection(encoding="latin-1").pack_command(*command))
    assert packed == b"".join(Connection(encoding="latin-1").pack_command(*command))
    assert b"caf\xe9" in packed
