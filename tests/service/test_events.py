"""Every committed change appears on `<prefix>:events`: type, project, name, version, revision; never a value."""

import asyncio
import time
from typing import Any

import msgspec
import pytest
import redis.asyncio as redis
from aiohttp.test_utils import TestClient

from contract.events import SUMMARY_FIELDS, decode_event
from contract.streams import FIELD_EVENT, FIELD_ORIGIN, FIELD_SEQ, Streams
from tests.conftest import CreateProject, Project

pytestmark = pytest.mark.timeout(15)

Entry = tuple[bytes, dict[bytes, bytes]]


async def wait_for_entries(client: redis.Redis, stream: str, count: int, timeout_s: float = 5.0) -> list[Entry]:
    deadline = time.monotonic() + timeout_s
    while True:
        entries: list[Entry] = await client.xrange(stream)
        if len(entries) >= count or time.monotonic() > deadline:
            return entries
        await asyncio.sleep(0.01)


def decoded(entries: list[Entry]) -> list[dict[str, Any]]:
    """Each entry's event as a dict, with its "type" tag."""
    return [msgspec.to_builtins(decode_event(fields[FIELD_EVENT])) for _, fields in entries]


async def test_put_overwrite_delete_each_publish_one_event(
    api: TestClient, project: Project, redis_client: redis.Redis, streams: Streams
) -> None:
    url = f"/api/projects/{project.id}/secrets/API_KEY"
    await api.put(url, json={"value": "canary-event-1"}, headers=project.dashboard)
    await api.put(url, json={"value": "canary-event-2"}, headers=project.dashboard)
    await api.delete(url, headers=project.dashboard)
    entries = await wait_for_entries(redis_client, streams.events, 4)
    events = [e for e in decoded(entries) if e["project"] == project.id]
    assert [(e["type"], e.get("name"), e.get("version"), e["revision"]) for e in events] == [
        ("project.create", None, None, 0),
        ("secret.put", "API_KEY", 1, 1),
        ("secret.put", "API_KEY", 2, 2),
        ("secret.delete", "API_KEY", 2, 3),
    ]


async def test_events_carry_consecutive_seqs_and_one_origin(
    api: TestClient, create_project: CreateProject, redis_client: redis.Redis, streams: Streams
) -> None:
    one, two = await create_project("One"), await create_project("Two")
    for i in range(5):
        for project in (one, two):
            await api.put(f"/api/projects/{project.id}/secrets/K{i}", json={"value": "v"}, headers=project.dashboard)
    entries = await wait_for_entries(redis_client, streams.events, 12)
    assert len(entries) == 12
    seqs = [int(fields[FIELD_SEQ]) for _, fields in entries]
    assert seqs == list(range(seqs[0], seqs[0] + 12))
    assert len({fields[FIELD_ORIGIN] for _, fields in entries}) == 1
    assert [e["seq"] for e in decoded(entries)] == seqs
    revisions = {p.id: [e["revision"] for e in decoded(entries) if e["project"] == p.id] for p in (one, two)}
    assert revisions == {one.id: [0, 1, 2, 3, 4, 5], two.id: [0, 1, 2, 3, 4, 5]}


async def test_no_event_ever_contains_a_value(
    api: TestClient, project: Project, redis_client: redis.Redis, streams: Streams
) -> None:
    canary = "canary-stream-5d1e0b7a"
    base = f"/api/projects/{project.id}/secrets"
    await api.put(f"{base}/A", json={"value": canary}, headers=project.dashboard)
    await api.put(f"{base}/A", json={"value": canary + "-2"}, headers=project.dashboard)
    await api.delete(f"{base}/A", headers=project.dashboard)
    entries = await wait_for_entries(redis_client, streams.events, 4)
    assert len(entries) == 4
    raw = repr(entries).encode()
    assert canary.encode() not in raw
    summary = {key.encode() for key in SUMMARY_FIELDS}
    for _, fields in entries:
        assert {FIELD_EVENT, FIELD_SEQ, FIELD_ORIGIN} <= set(fields) <= {FIELD_EVENT, FIELD_SEQ, FIELD_ORIGIN} | summary


async def test_entries_carry_flat_summary_fields(
    api: TestClient, project: Project, redis_client: redis.Redis, streams: Streams
) -> None:
    await api.put(f"/api/projects/{project.id}/secrets/FLAT", json={"value": "v"}, headers=project.dashboard)
    entries = await wait_for_entries(redis_client, streams.events, 2)
    fields = entries[-1][1]
    assert fields[b"type"] == b"secret.put" and fields[b"name"] == b"FLAT" and fields[b"version"] == b"1"
    assert fields[b"project"] == project.id.encode() and fields[b"revision"] == b"1"


async def test_a_refused_change_publishes_nothing(
    api: TestClient, project: Project, redis_client: redis.Redis, streams: Streams
) -> None:
    base = f"/api/projects/{project.id}/secrets"
    await api.put(f"{base}/A", json={"value": ""}, headers=project.dashboard)
    await api.delete(f"{base}/NOPE", headers=project.dashboard)
    await api.put(f"{base}/A", json={"value": "v"}, headers={**project.dashboard, "If-Match": "4"})
    await api.put(f"{base}/OK", json={"value": "v"}, headers=project.dashboard)  # a marker
    entries = await wait_for_entries(redis_client, streams.events, 2)
    await asyncio.sleep(0.1)
    entries = await redis_client.xrange(streams.events)
    assert [(e["type"], e.get("name")) for e in decoded(entries)] == [("project.create", None), ("secret.put", "OK")]


async def test_an_event_is_published_right_after_the_write(
    api: TestClient, project: Project, redis_client: redis.Redis, streams: Streams
) -> None:
    await wait_for_entries(redis_client, streams.events, 1)
    started = time.monotonic()
    await api.put(f"/api/projects/{project.id}/secrets/FAST", json={"value": "v"}, headers=project.dashboard)
    entries = await wait_for_entries(redis_client, streams.events, 2, timeout_s=2.0)
    assert len(entries) == 2
    assert time.monotonic() - started < 0.5  # no polling interval on the happy path
