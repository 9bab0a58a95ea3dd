"""Consumer groups are created by their readers, as taskiq-redis does: from the stream's start,
with MKSTREAM, and an existing group is fine (Redis may also come back empty, without it)."""

import redis.asyncio as redis
from redis.exceptions import ResponseError


async def ensure_group(client: redis.Redis, stream: str, group: str) -> None:
    try:
        await client.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
