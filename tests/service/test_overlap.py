"""Overlapping rotation of a signing key: `previous_valid_for_s` keeps the replaced value for N seconds,
in the engine snapshot (for verify_webhook) and as `previous_valid_until` in the metadata, and then
no more."""

import asyncio
import secrets as random
import time
from datetime import datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from cryptography.fernet import Fernet

from contract.sealing import open_sealed
from service.state import WRITER
from service.store.secrets import purge_expired_previous
from tests.conftest import Project
from tests.support.api import assert_rfc3339_utc, expect_error

pytestmark = pytest.mark.timeout(20)


def url(project: Project, name: str = "SIGNING_KEY") -> str:
    return f"/api/projects/{project.id}/secrets/{name}"


async def put(api: TestClient, project: Project, body: dict[str, Any]) -> dict[str, Any]:
    response = await api.put(url(project), json=body, headers=project.dashboard)
    assert response.status in (200, 201), await response.text()
    answer: dict[str, Any] = await response.json()
    return answer


async def engine_entry(api: TestClient, project: Project) -> tuple[dict[str, Any], Fernet]:
    snapshot = await (await api.get(f"/api/engine/{project.id}/secrets", headers=project.engine)).json()
    return next(s for s in snapshot["secrets"] if s["name"] == "SIGNING_KEY"), Fernet(snapshot["data_key"])


async def test_the_previous_value_is_served_until_the_window_ends(api: TestClient, project: Project) -> None:
    old, new = "whsec_" + random.token_hex(16), "whsec_" + random.token_hex(16)
    await put(api, project, {"value": old})
    started = time.time()
    meta = await put(api, project, {"value": new, "previous_valid_for_s": 1})
    until = assert_rfc3339_utc(meta["previous_valid_until"])
    assert started + 0.5 < until.timestamp() < time.time() + 1.5
    assert meta["version"] == 2

    entry, fernet = await engine_entry(api, project)
    assert open_sealed(fernet, entry["ciphertext"], project.id, "secret", "SIGNING_KEY") == new
    assert open_sealed(fernet, entry["previous_ciphertext"], project.id, "secret", "SIGNING_KEY") == old
    assert abs(entry["previous_valid_until"] - until.timestamp()) < 0.01
    shown = await (await api.get(url(project), headers=project.dashboard)).json()
    assert datetime.fromisoformat(shown["previous_valid_until"]) == until
    listed = await (await api.get(f"/api/projects/{project.id}/secrets", headers=project.dashboard)).json()
    assert listed["secrets"][0]["previous_valid_until"] == shown["previous_valid_until"]

    await asyncio.sleep(max(0.0, until.timestamp() - time.time()) + 0.05)
    entry, _ = await engine_entry(api, project)
    assert "previous_ciphertext" not in entry and "previous_valid_until" not in entry
    shown = await (await api.get(url(project), headers=project.dashboard)).json()
    assert shown["previous_valid_until"] is None

    assert await api.app[WRITER].submit(purge_expired_previous(time.time())) == 1  # the housekeeping pass
    assert await api.app[WRITER].submit(purge_expired_previous(time.time())) == 0


async def test_a_plain_overwrite_ends_the_window(api: TestClient, project: Project) -> None:
    await put(api, project, {"value": "one"})
    await put(api, project, {"value": "two", "previous_valid_for_s": 600})
    meta = await put(api, project, {"value": "three"})
    assert meta["previous_valid_until"] is None
    entry, _ = await engine_entry(api, project)
    assert "previous_ciphertext" not in entry


async def test_a_second_overlapping_rotation_keeps_only_the_value_it_replaces(
    api: TestClient, project: Project
) -> None:
    await put(api, project, {"value": "one"})
    await put(api, project, {"value": "two", "previous_valid_for_s": 600})
    await put(api, project, {"value": "three", "previous_valid_for_s": 600})
    entry, fernet = await engine_entry(api, project)
    assert open_sealed(fernet, entry["previous_ciphertext"], project.id, "secret", "SIGNING_KEY") == "two"


async def test_creating_a_secret_has_no_previous_value(api: TestClient, project: Project) -> None:
    meta = await put(api, project, {"value": "first", "previous_valid_for_s": 60})
    assert meta["version"] == 1 and meta["previous_valid_until"] is None


@pytest.mark.parametrize("bad", [0, -1, 7 * 86_400 + 1, 1.5, "60", True, None])
async def test_the_window_must_be_1_s_to_7_days(api: TestClient, project: Project, bad: Any) -> None:
    await put(api, project, {"value": "one"})
    response = await api.put(
        url(project), json={"value": "two", "previous_valid_for_s": bad}, headers=project.dashboard
    )
    if bad is None:  # null: no window, as if absent
        assert response.status == 200
        return
    error = await expect_error(response, 422)
    assert "previous_valid_for_s" in error["message"]


async def test_seven_days_is_accepted(api: TestClient, project: Project) -> None:
    await put(api, project, {"value": "one"})
    meta = await put(api, project, {"value": "two", "previous_valid_for_s": 7 * 86_400})
    assert assert_rfc3339_utc(meta["previous_valid_until"]).timestamp() > time.time() + 7 * 86_400 - 5
