"""The relay's engine deltas: a `secret.put` leaves its new ciphertext under
`<prefix>:engine-delta:<origin>:<seq>` for a minute, set before its event is added, so a worker
patches its snapshot without a fetch. Ciphertext only: never the value, never the project key."""

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as redis
from aiohttp.test_utils import TestClient

from contract.engine import EngineDelta, EngineSecret, delta_decoder, delta_encoder
from contract.events import SecretPut, encode_event
from contract.streams import FIELD_EVENT, FIELD_ORIGIN, FIELD_SEQ, Streams
from contract.tasks import cancel_and_wait
from service.relay import DELTA_MAX_BYTES, DELTA_TTL_MS, OutboxRelay
from service.store.writer import OutboxEntry
from tests.conftest import Project
from tests.service.test_events import decoded, wait_for_entries

pytestmark = pytest.mark.timeout(15)

ORIGIN = "relay-test-db"


async def put(api: TestClient, project: Project, name: str, value: str, **extra: Any) -> None:
    response = await api.put(
        f"/api/projects/{project.id}/secrets/{name}", json={"value": value, **extra}, headers=project.dashboard
    )
    assert response.status in (200, 201), await response.text()


async def engine_answer(api: TestClient, project: Project) -> dict[str, Any]:
    response = await api.get(f"/api/engine/{project.id}/secrets", headers=project.engine)
    assert response.status == 200
    body: dict[str, Any] = await response.json()
    return body


async def delta_keys(client: redis.Redis, streams: Streams) -> dict[str, bytes]:
    keys = [key.decode() async for key in client.scan_iter(match=f"{streams.prefix}:engine-delta:*")]
    return {key: await client.get(key) or b"" for key in keys}


async def published_delta(client: redis.Redis, streams: Streams, count: int) -> tuple[dict[str, Any], EngineDelta]:
    """The newest event (after waiting for `count` of them) and the engine delta beside it."""
    entries = await wait_for_entries(client, streams.events, count)
    _, fields = entries[-1]
    key = streams.engine_delta(fields[FIELD_ORIGIN].decode(), int(fields[FIELD_SEQ]))
    payload = await client.get(key)
    assert payload is not None, f"no engine delta at {key}"
    assert 0 < await client.pttl(key) <= DELTA_TTL_MS
    return decoded(entries)[-1], delta_decoder.decode(payload)


async def test_a_put_leaves_the_engine_delta_of_its_event(
    api: TestClient, project: Project, redis_client: redis.Redis, streams: Streams
) -> None:
    await put(api, project, "API_KEY", "relay-value-1")
    event, delta = await published_delta(redis_client, streams, 2)
    engine = await engine_answer(api, project)
    assert (delta.project, delta.revision) == (project.id, event["revision"]) == (project.id, engine["revision"])
    assert delta.secret == EngineSecret(**engine["secrets"][0])


async def test_an_overlap_put_carries_the_previous_ciphertext_as_the_engine_shows_it(
    api: TestClient, project: Project, redis_client: redis.Redis, streams: Streams
) -> None:
    await put(api, project, "SIGNING", "relay-old")
    await put(api, project, "SIGNING", "relay-new", previous_valid_for_s=600)
    _, delta = await published_delta(redis_client, streams, 3)
    shown = (await engine_answer(api, project))["secrets"][0]
    assert delta.secret is not None and delta.secret.previous_ciphertext == shown["previous_ciphertext"]
    assert delta.secret.ciphertext == shown["ciphertext"] and delta.secret.version == 2
    assert delta.secret.previous_valid_until == pytest.approx(shown["previous_valid_until"])


async def test_only_secret_puts_leave_a_delta(
    api: TestClient, project: Project, redis_client: redis.Redis, streams: Streams
) -> None:
    await put(api, project, "A", "relay-a")
    frontend = await api.put(
        f"/api/projects/{project.id}/frontend-vars/PUBLIC_URL", json={"value": "https://x"}, headers=project.dashboard
    )
    assert frontend.status == 201, await frontend.text()
    await api.delete(f"/api/projects/{project.id}/secrets/A", headers=project.dashboard)
    await put(api, project, "B", "relay-b")
    entries = await wait_for_entries(redis_client, streams.events, 5)
    puts = {int(f[FIELD_SEQ]) for (_, f), e in zip(entries, decoded(entries), strict=True) if e["type"] == "secret.put"}
    origin = entries[0][1][FIELD_ORIGIN].decode()
    assert len(puts) == 2
    assert set(await delta_keys(redis_client, streams)) == {streams.engine_delta(origin, seq) for seq in puts}


async def test_a_delta_holds_neither_the_value_nor_the_project_key(
    api: TestClient, project: Project, redis_client: redis.Redis, streams: Streams
) -> None:
    canary = "relay-canary-" + "9f3c1d2e" * 4
    await put(api, project, "CANARY", canary)
    await put(api, project, "CANARY", canary + "-2", previous_valid_for_s=600)
    await wait_for_entries(redis_client, streams.events, 3)
    data_key = (await engine_answer(api, project))["data_key"].encode()
    stored = await delta_keys(redis_client, streams)
    assert len(stored) == 2
    for payload in stored.values():
        assert canary.encode() not in payload and data_key not in payload
        assert b"data_key" not in payload


# --- the relay on its own, with entries made by hand -----------------------------------------------


@pytest.fixture
async def relay(redis_client: redis.Redis, streams: Streams) -> AsyncIterator[OutboxRelay]:
    published: list[int] = []
    relay = OutboxRelay(redis_client, streams.events, ORIGIN, 1000, published.append)
    task = asyncio.create_task(relay.run())
    yield relay
    await cancel_and_wait(task)


def entry(seq: int, delta: bytes | None) -> OutboxEntry:
    event = SecretPut(seq=seq, project="p", revision=seq, name="N", version=seq)
    return OutboxEntry(seq, encode_event(event), delta)


def delta_for(seq: int, ciphertext: str = "gAAAAA-ciphertext") -> bytes:
    secret = EngineSecret(name="N", version=seq, ciphertext=ciphertext)
    return delta_encoder.encode(EngineDelta(project="p", revision=seq, secret=secret))


async def published(relay: OutboxRelay, count: int) -> None:
    deadline = time.monotonic() + 5
    while relay.published_total < count:
        assert time.monotonic() < deadline, "the relay did not publish"
        await asyncio.sleep(0.005)


async def test_entries_without_a_delta_or_with_an_oversized_one_set_no_key(
    relay: OutboxRelay, redis_client: redis.Redis, streams: Streams
) -> None:
    big = delta_for(2, "x" * DELTA_MAX_BYTES)
    relay.committed([entry(1, None), entry(2, big), entry(3, delta_for(3))])
    await published(relay, 3)
    assert len(await redis_client.xrange(streams.events)) == 3
    assert set(await delta_keys(redis_client, streams)) == {streams.engine_delta(ORIGIN, 3)}


async def test_the_delta_is_set_before_its_event_is_added(
    relay: OutboxRelay, redis_client: redis.Redis, streams: Streams
) -> None:
    """In the order Redis ran them (MONITOR), so a reader that sees the event finds the key."""
    seen: list[str] = []
    async with redis_client.monitor() as monitor:
        relay.committed([entry(1, delta_for(1)), entry(2, delta_for(2))])
        while sum(1 for command in seen if command.startswith("XADD")) < 2:
            command = (await asyncio.wait_for(monitor.next_command(), 5))["command"]
            if streams.prefix in command:
                seen.append(command)
    writes = [c.split()[0] + " " + c.split()[1] for c in seen if c.split()[0] in ("SET", "XADD")]
    assert writes == [
        f"SET {streams.engine_delta(ORIGIN, 1)}",
        f"XADD {streams.events}",
        f"SET {streams.engine_delta(ORIGIN, 2)}",
        f"XADD {streams.events}",
    ]
    fields = (await redis_client.xrange(streams.events))[0][1]
    assert fields[FIELD_EVENT] == entry(1, None).payload
