"""Master key rotation: `rewrap_all` moves every project key under the first master key in small batches,
resumes after an interruption without redoing anything, runs while the API serves, and afterwards the
old master key can be removed."""

import asyncio
import dataclasses
import sqlite3
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient
from cryptography.fernet import Fernet

from contract.config import Secret
from contract.sealing import open_sealed
from service.keyring import KeyRing, KeyUnavailable
from service.keystore import Keystore
from service.rewrap import Progress, remaining, rewrap_all
from service.settings import Settings
from tests.conftest import CreateProject, Project

pytestmark = pytest.mark.timeout(60)

OLD = Secret(Fernet.generate_key().decode())
NEW = Secret(Fernet.generate_key().decode())


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The service as step 1 left it: the new master key first, the old one still listed."""
    return dataclasses.replace(settings, master_keys=(NEW, OLD))


def keyring(settings: Settings, *keys: Secret) -> KeyRing:
    return KeyRing(keys, Keystore(settings.keystore))


async def projects_under_the_old_key(
    create_project: CreateProject, api: TestClient, settings: Settings, count: int
) -> list[Project]:
    projects = [await create_project(f"P{i}") for i in range(count)]
    for project in projects:
        url = f"/api/projects/{project.id}/secrets/TOKEN"
        assert (await api.put(url, json={"value": f"value-of-{project.id}"}, headers=project.dashboard)).status == 201
    rewrap_all(settings.db_path, keyring(settings, OLD, NEW))  # as they were before the rotation began
    assert len(remaining(settings.db_path, keyring(settings, NEW, OLD))) == count
    return projects


def decrypt_all(db_path: Path, ring: KeyRing) -> dict[str, str]:
    with sqlite3.connect(db_path) as conn:
        rows = conn.execute(
            "SELECT p.id, p.wrapped_key, s.ciphertext FROM projects p JOIN secrets s ON s.project_id = p.id "
            "WHERE s.name = 'TOKEN'"
        ).fetchall()
    return {p: open_sealed(ring.project_fernet(bytes(w)), bytes(c), p, "secret", "TOKEN") for p, w, c in rows}


class Interrupted(Exception):
    pass


async def test_an_interrupted_rewrap_resumes_and_then_the_old_key_can_go(
    api: TestClient, create_project: CreateProject, settings: Settings
) -> None:
    await projects_under_the_old_key(create_project, api, settings, 7)
    seen: list[Progress] = []

    def stop_after_two_batches(progress: Progress) -> None:
        seen.append(dataclasses.replace(progress))
        if len(seen) == 2:
            raise Interrupted  # as a Ctrl-C or a crash between two batches

    with pytest.raises(Interrupted):
        rewrap_all(settings.db_path, keyring(settings, NEW, OLD), batch_size=3, on_batch=stop_after_two_batches)
    assert [(p.seen, p.rewrapped) for p in seen] == [(3, 3), (6, 6)]  # each batch committed on its own
    assert len(remaining(settings.db_path, keyring(settings, NEW, OLD))) == 1

    resumed = rewrap_all(settings.db_path, keyring(settings, NEW, OLD), batch_size=3)
    assert (resumed.total, resumed.already, resumed.rewrapped, resumed.failed) == (7, 6, 1, [])
    assert remaining(settings.db_path, keyring(settings, NEW, OLD)) == []
    again = rewrap_all(settings.db_path, keyring(settings, NEW, OLD), batch_size=3)
    assert (again.already, again.rewrapped) == (7, 0)

    values = decrypt_all(settings.db_path, keyring(settings, NEW))  # the old master key removed
    assert values == {p: f"value-of-{p}" for p in values} and len(values) == 7
    with pytest.raises(KeyUnavailable):
        decrypt_all(settings.db_path, keyring(settings, OLD))


async def test_the_api_keeps_serving_during_a_rewrap(
    api: TestClient, create_project: CreateProject, settings: Settings
) -> None:
    projects = await projects_under_the_old_key(create_project, api, settings, 6)

    def slow(progress: Progress) -> None:
        import time

        time.sleep(0.02)  # batches of one, spread out, so requests land between and during them

    rewrap = asyncio.create_task(
        asyncio.to_thread(rewrap_all, settings.db_path, keyring(settings, NEW, OLD), batch_size=1, on_batch=slow)
    )
    statuses: list[int] = []
    round_ = 0
    while not rewrap.done():
        round_ += 1
        for project in projects:
            put = await api.put(
                f"/api/projects/{project.id}/secrets/LIVE", json={"value": f"v{round_}"}, headers=project.dashboard
            )
            fetched = await api.get(f"/api/engine/{project.id}/secrets", headers=project.engine)
            statuses += [put.status, fetched.status]
    progress = await rewrap
    assert progress.rewrapped == 6 and progress.failed == []
    assert statuses and set(statuses) <= {200, 201}, statuses
    assert remaining(settings.db_path, keyring(settings, NEW, OLD)) == []
    assert len(decrypt_all(settings.db_path, keyring(settings, NEW))) == 6


async def test_a_key_no_master_key_opens_is_reported_not_skipped(
    api: TestClient, project: Project, settings: Settings
) -> None:
    stranger = Secret(Fernet.generate_key().decode())
    progress = rewrap_all(settings.db_path, keyring(settings, stranger))
    assert progress.failed == [project.id] and not progress.complete
