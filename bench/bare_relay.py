"""The floor under the engine: a webhook relayed through Redis to a worker and back, and nothing else.

`python -m bench.bare_relay server PORT` is an aiohttp app whose POST /hooks/bare puts the request
on a Redis stream and answers with the result a worker puts on another; `python -m bench.bare_relay
worker` reads requests through a consumer group, does the same Stripe HMAC check as the ceiling
and hands results back. Both take the signing key from BENCH_SIGNING_KEY and name their streams
after BENCH_PREFIX.

It moves a request the way the engine does, with the engine's own Redis plumbing (uvloop, hiredis
packing, batched commands, stream reads on their own connections), and leaves out every feature
the issues require on top: the execution record in SQLite, the per-execution grant, the secret
lookup and decryption, the workflow, masking, the audit of reads, metrics and middlewares. So the
share of the ceiling it reaches is the most an engine built this way can reach on this machine.
"""

import asyncio
import hashlib
import hmac
import itertools
import os
import sys
import time
from collections.abc import AsyncIterator
from typing import Final

import redis.asyncio as redis
from aiohttp import web

from contract import loops
from contract.groups import ensure_group
from contract.redis_batch import Command, CommandBatcher
from contract.redis_clients import from_url
from contract.stream_reads import own_connection, read_entries

REDIS_URL: Final = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
PREFIX: Final = os.environ.get("BENCH_PREFIX", "bench-bare")
REQUESTS: Final = f"{PREFIX}:bare:requests"
RESULTS: Final = f"{PREFIX}:bare:results"
GROUP: Final = "bare-workers"
STREAM_LENGTH: Final = 10_000
TOLERANCE_S: Final = 300
ACCEPTED: Final = b'{"received":true}'
REFUSED: Final = b'{"error":"invalid_signature"}'
WAITING: Final = web.AppKey("waiting", dict[bytes, "asyncio.Future[tuple[int, bytes]]"])
BATCHER: Final = web.AppKey("batcher", CommandBatcher)


# --- the service side ------------------------------------------------------------------------------


async def hook(request: web.Request) -> web.Response:
    body = await request.read()
    request_id = str(next(_ids)).encode()
    answer: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
    request.app[WAITING][request_id] = answer
    signature = request.headers.get("Stripe-Signature", "")
    fields = ("id", request_id, "signature", signature, "body", body)
    await request.app[BATCHER].run(("XADD", REQUESTS, "MAXLEN", "~", STREAM_LENGTH, "*", *fields))
    status, reply = await asyncio.wait_for(answer, 30)
    return web.Response(status=status, body=reply, content_type="application/json")


_ids = itertools.count()


async def redis_and_results(app: web.Application) -> AsyncIterator[None]:
    client = from_url(REDIS_URL)
    app[BATCHER] = CommandBatcher(client, transaction=False, timeout_s=5.0)
    app[WAITING] = {}
    reader = asyncio.create_task(read_results(client, app[WAITING]))
    yield
    reader.cancel()
    await client.aclose()


async def read_results(client: redis.Redis, waiting: dict[bytes, "asyncio.Future[tuple[int, bytes]]"]) -> None:
    last_id: bytes | str = "$"
    async with own_connection(client) as connection:
        while True:
            for entry_id, fields in await read_entries(
                connection, "XREAD", "COUNT", 256, "BLOCK", 1000, "STREAMS", RESULTS, last_id
            ):
                last_id = entry_id
                answer = waiting.pop(fields[b"id"], None)
                if answer is not None and not answer.done():
                    answer.set_result((int(fields[b"status"]), fields[b"body"]))


def create_app() -> web.Application:
    app = web.Application()
    app.cleanup_ctx.append(redis_and_results)
    app.router.add_post("/hooks/bare", hook)
    return app


# --- the worker side -------------------------------------------------------------------------------


def verified(key: bytes, signature: bytes, body: bytes) -> bool:
    """The ceiling's check: the Stripe scheme, one v1 signature, a 300 s tolerance."""
    parts = dict(part.split(b"=", 1) for part in signature.split(b",") if b"=" in part)
    expected = hmac.new(key, parts.get(b"t", b"") + b"." + body, hashlib.sha256).hexdigest().encode()
    fresh = abs(time.time() - int(parts.get(b"t", b"0"))) <= TOLERANCE_S
    return fresh and hmac.compare_digest(expected, parts.get(b"v1", b""))


async def work(key: bytes) -> None:
    client = from_url(REDIS_URL)
    await ensure_group(client, REQUESTS, GROUP)
    batcher = CommandBatcher(client, transaction=False, timeout_s=5.0)
    consumer = f"bare-{os.getpid()}"
    async with own_connection(client) as connection:
        while True:
            entries = await read_entries(
                connection, "XREADGROUP", "GROUP", GROUP, consumer, "COUNT", 64, "BLOCK", 1000, "STREAMS", REQUESTS, ">"
            )
            if entries:
                await batcher.run(*[_result(key, fields) for _, fields in entries],
                                  ("XACK", REQUESTS, GROUP, *[entry_id for entry_id, _ in entries]))  # fmt: skip


def _result(key: bytes, fields: dict[bytes, bytes]) -> Command:
    ok = verified(key, fields[b"signature"], fields[b"body"])
    reply = ("status", 200 if ok else 400, "body", ACCEPTED if ok else REFUSED)
    return ("XADD", RESULTS, "MAXLEN", "~", STREAM_LENGTH, "*", "id", fields[b"id"], *reply)


def main() -> None:
    role = sys.argv[1]
    if role == "server":
        web.run_app(create_app(), host="127.0.0.1", port=int(sys.argv[2]), print=None, access_log=None,
                    loop=loops.new_event_loop())  # fmt: skip
    elif role == "worker":
        loops.run(work(os.environ["BENCH_SIGNING_KEY"].encode()))
    else:
        raise SystemExit("usage: python -m bench.bare_relay server PORT | worker")


if __name__ == "__main__":
    main()
