"""Project keys after creation: rotation (POST /api/projects/{p}/rotate-key) and crypto-shredding
(DELETE /api/projects/{p}): a copy of the database taken before the delete yields nothing."""

import secrets as random
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis.asyncio as redis
from aiohttp.test_utils import TestClient
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from contract.config import Secret
from contract.events import decode_event
from contract.sealing import SealError, open_sealed
from contract.streams import FIELD_EVENT, Streams
from service.keyring import KeyRing, KeyUnavailable, split_wrapped
from service.keystore import Keystore
from service.settings import Settings
from tests.conftest import CreateProject, Project, admin_headers
from tests.service.test_events import wait_for_entries
from tests.support.api import expect_error

pytestmark = pytest.mark.timeout(30)


def canary() -> str:
    return f"canary-{random.token_hex(12)}"


async def put_secret(api: TestClient, project: Project, name: str, value: str, **extra: Any) -> dict[str, Any]:
    response = await api.put(
        f"/api/projects/{project.id}/secrets/{name}", json={"value": value, **extra}, headers=project.dashboard
    )
    assert response.status in (200, 201), await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def snapshot(api: TestClient, project: Project) -> dict[str, Any]:
    response = await api.get(f"/api/engine/{project.id}/secrets", headers=project.engine)
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


def opened(snap: dict[str, Any], name: str, field: str = "ciphertext", store: str = "secret") -> str:
    entries = snap["secrets"] if store == "secret" else snap["credentials"]
    entry = next(e for e in entries if e["name"] == name)
    return open_sealed(Fernet(snap["data_key"]), entry[field], snap["project"], store, name)


async def rotate(api: TestClient, project: Project, headers: dict[str, str]) -> Any:
    return await api.post(f"/api/projects/{project.id}/rotate-key", headers=headers)


# ---- rotation ----------------------------------------------------------------------------------------


async def test_rotation_re_encrypts_every_value_under_a_new_key(
    api: TestClient, project: Project, redis_client: redis.Redis, streams: Streams
) -> None:
    plain, old_signing, new_signing, stripe = canary(), canary(), canary(), "sk_test_" + random.token_hex(12)
    await put_secret(api, project, "API_TOKEN", plain)
    await put_secret(api, project, "SIGNING_KEY", old_signing)
    await put_secret(api, project, "SIGNING_KEY", new_signing, previous_valid_for_s=600)
    credential = await api.put(
        f"/api/projects/{project.id}/credentials/STRIPE",
        json={"type": "stripe", "fields": {"secret_key": stripe}},
        headers=project.dashboard,
    )
    assert credential.status == 201
    before = await snapshot(api, project)

    response = await rotate(api, project, project.dashboard)
    assert response.status == 200, await response.text()
    outcome = await response.json()
    assert outcome["project"] == project.id and outcome["revision"] == before["revision"] + 1
    assert (outcome["secrets"], outcome["credentials"]) == (2, 1)
    for value in (plain, old_signing, new_signing, stripe):
        assert value not in await response.text()

    after = await snapshot(api, project)
    assert after["revision"] == before["revision"] + 1
    assert after["data_key"] != before["data_key"]
    assert opened(after, "API_TOKEN") == plain
    assert opened(after, "SIGNING_KEY") == new_signing
    assert opened(after, "SIGNING_KEY", "previous_ciphertext") == old_signing
    assert msgspec.json.decode(opened(after, "STRIPE", store="credential")) == {"secret_key": stripe}
    assert [(s["name"], s["version"]) for s in after["secrets"]] == [("API_TOKEN", 1), ("SIGNING_KEY", 2)]
    with pytest.raises(SealError):  # the old key opens none of the new ciphertexts
        opened({**after, "data_key": before["data_key"]}, "API_TOKEN")

    entries = await wait_for_entries(redis_client, streams.events, 6)
    last = decode_event(entries[-1][1][FIELD_EVENT])
    assert (last.project, last.revision, type(last).__struct_config__.tag) == (
        project.id,
        after["revision"],
        "project.key_rotate",
    )


async def test_fingerprints_follow_the_new_key(api: TestClient, project: Project) -> None:
    """The frontend guardrail still recognises a copy of a secret (its keyed fingerprint was recomputed)."""
    value, stripe = canary(), "sk_test_" + random.token_hex(12)
    await put_secret(api, project, "PRIVATE", value)
    await api.put(
        f"/api/projects/{project.id}/credentials/STRIPE",
        json={"type": "stripe", "fields": {"secret_key": stripe}},
        headers=project.dashboard,
    )
    assert (await rotate(api, project, project.dashboard)).status == 200
    for copied in (value, stripe):
        response = await api.put(
            f"/api/projects/{project.id}/frontend-vars/PUBLIC", json={"value": copied}, headers=project.dashboard
        )
        assert response.status == 422, await response.text()


async def test_the_admin_may_rotate_and_other_tokens_may_not(api: TestClient, create_project: CreateProject) -> None:
    mine, other = await create_project("Mine"), await create_project("Other")
    assert (await rotate(api, mine, admin_headers())).status == 200
    await expect_error(await rotate(api, mine, mine.engine), 403, "wrong_token_scope")
    await expect_error(await rotate(api, mine, other.dashboard), 404, "project_not_found")
    await expect_error(await api.post("/api/projects/nope/rotate-key", headers=admin_headers()), 404)
    await expect_error(await api.post(f"/api/projects/{mine.id}/rotate-key"), 401)


async def test_a_value_that_does_not_decrypt_blocks_rotation_and_changes_nothing(
    api: TestClient, project: Project, settings: Settings
) -> None:
    await put_secret(api, project, "GOOD", canary())
    await put_secret(api, project, "BROKEN", canary())
    with sqlite3.connect(settings.db_path) as conn:  # a row copied from elsewhere: its binding does not match
        conn.execute(
            "UPDATE secrets SET ciphertext = (SELECT ciphertext FROM secrets WHERE name = 'GOOD') WHERE name = 'BROKEN'"
        )
    before = await snapshot(api, project)
    error = await expect_error(await rotate(api, project, project.dashboard), 409, "rotation_blocked")
    assert "BROKEN" in error["message"]
    assert (await snapshot(api, project))["data_key"] == before["data_key"]


async def test_a_write_racing_the_rotation_is_redone_under_the_new_key(api: TestClient, project: Project) -> None:
    """A put committed between the plan and the rotation's transaction is re-encrypted inside it."""
    from service.state import KEYRING, READER, WRITER
    from service.store import project_keys

    app = api.server.app
    await put_secret(api, project, "RACED", "first-" + canary())
    rows = await project_keys.project_rows(app[READER], project.id)
    plan = project_keys.plan_rotation(app[KEYRING], project.id, rows)
    latest = "second-" + canary()
    await put_secret(api, project, "RACED", latest)
    await put_secret(api, project, "ADDED", "third")
    await app[WRITER].submit(project_keys.rotate_key(app[KEYRING], project.id, plan))
    after = await snapshot(api, project)
    assert after["data_key"] == plan.new_key.decode()
    assert opened(after, "RACED") == latest and opened(after, "ADDED") == "third"


# ---- crypto-shredding ----------------------------------------------------------------------------------


def copy_database(db_path: Path, to: Path) -> Path:
    """A consistent copy of the live database, as a backup tool takes it (the SQLite backup API)."""
    with sqlite3.connect(db_path) as source, sqlite3.connect(to) as target:
        source.backup(target)
    return to


def values_in(db: Path, keyring: KeyRing, project_id: str) -> list[str]:
    """Everything the copy `db` yields for the project with what `keyring` holds."""
    with sqlite3.connect(db) as conn:
        wrapped = conn.execute("SELECT wrapped_key FROM projects WHERE id = ?", (project_id,)).fetchone()[0]
        rows = conn.execute("SELECT name, ciphertext FROM secrets WHERE project_id = ?", (project_id,)).fetchall()
    fernet = keyring.project_fernet(bytes(wrapped))
    return [open_sealed(fernet, bytes(c), project_id, "secret", n) for n, c in rows]


async def test_a_copy_of_the_database_taken_before_a_delete_yields_nothing(
    api: TestClient, project: Project, settings: Settings, tmp_path: Path
) -> None:
    value = canary()
    await put_secret(api, project, "STRIPE_KEY", value)
    backup = copy_database(settings.db_path, tmp_path / "backup-before-delete.db")
    keystore_backup = tmp_path / "keystore-backup"
    shutil.copytree(settings.keystore, keystore_backup)
    # The test is meaningful: before the delete, the copy and the keys do yield the value.
    assert values_in(backup, KeyRing(settings.master_keys, Keystore(settings.keystore)), project.id) == [value]

    response = await api.delete(f"/api/projects/{project.id}", headers=admin_headers())
    assert response.status == 204, await response.text()

    remaining = KeyRing(settings.master_keys, Keystore(settings.keystore))  # every master key, the live keystore
    with pytest.raises(KeyUnavailable):
        values_in(backup, remaining, project.id)
    # Not even by hand: the master keys open only the outer layer, and no shred key opens the inner one.
    with sqlite3.connect(backup) as conn:
        wrapped = bytes(conn.execute("SELECT wrapped_key FROM projects WHERE id = ?", (project.id,)).fetchone()[0])
    shred_id, outer = split_wrapped(wrapped)
    assert shred_id is not None and not (settings.keystore / shred_id).exists()
    inner = MultiFernet([Fernet(k.reveal()) for k in settings.master_keys]).decrypt(outer)
    for key_file in settings.keystore.iterdir():
        with pytest.raises(InvalidToken):
            Fernet(key_file.read_bytes()).decrypt(inner)
    # The guarantee is relative to the keystore: a keystore copy from before the delete still opens the backup.
    assert values_in(backup, KeyRing(settings.master_keys, Keystore(keystore_backup)), project.id) == [value]


async def test_deleting_a_project_removes_everything_and_its_tokens_stop_working(
    api: TestClient, project: Project, settings: Settings, redis_client: redis.Redis, streams: Streams
) -> None:
    value = canary()
    await put_secret(api, project, "API_KEY", value)
    await api.put(
        f"/api/projects/{project.id}/frontend-vars/PUBLIC_URL", json={"value": "x"}, headers=project.dashboard
    )
    workflow = {
        "trigger": {"type": "webhook"},
        "nodes": [{"id": "r", "type": "respond", "config": {"body": "${ secrets.API_KEY }"}}],
    }
    assert (
        await api.put(f"/api/projects/{project.id}/workflows/hook", json=workflow, headers=project.dashboard)
    ).status == 201
    stored = await snapshot(api, project)
    ciphertext, wrapped = stored["secrets"][0]["ciphertext"].encode(), _wrapped_key(settings.db_path, project.id)
    assert (await api.delete(f"/api/projects/{project.id}", headers=admin_headers())).status == 204

    await expect_error(await api.get(f"/api/projects/{project.id}/secrets", headers=project.dashboard), 401)
    await expect_error(await api.get(f"/api/engine/{project.id}/secrets", headers=project.engine), 401)
    with sqlite3.connect(settings.db_path) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            columns = [c[1] for c in conn.execute(f"PRAGMA table_info({table})")]
            if "project_id" in columns:
                left = conn.execute(f"SELECT count(*) FROM {table} WHERE project_id = ?", (project.id,)).fetchone()
                assert left[0] == 0, table
        assert conn.execute("SELECT count(*) FROM projects WHERE id = ?", (project.id,)).fetchone()[0] == 0
    assert list(settings.keystore.iterdir()) == []
    for path in settings.db_path.parent.glob(settings.db_path.name + "*"):  # database, WAL, shared memory
        content = path.read_bytes()  # SQLite's secure_delete zeroed the rows; the WAL was emptied
        assert ciphertext not in content and wrapped not in content, path

    entries = await wait_for_entries(redis_client, streams.events, 5)
    last = decode_event(entries[-1][1][FIELD_EVENT])
    assert type(last).__struct_config__.tag == "project.delete" and last.project == project.id
    again = await api.post("/api/projects", json={"name": "Again", "id": project.id}, headers=admin_headers())
    assert again.status == 201  # the id is free again, with nothing of the old project
    fresh = await again.json()
    listed = await api.get(
        f"/api/projects/{project.id}/secrets", headers={"Authorization": f"Bearer {fresh['dashboard_token']}"}
    )
    assert (await listed.json())["secrets"] == []


def _wrapped_key(db_path: Path, project_id: str) -> bytes:
    with sqlite3.connect(db_path) as conn:
        return bytes(conn.execute("SELECT wrapped_key FROM projects WHERE id = ?", (project_id,)).fetchone()[0])


async def test_only_the_admin_deletes_a_project(api: TestClient, project: Project) -> None:
    await expect_error(await api.delete(f"/api/projects/{project.id}", headers=project.dashboard), 403)
    await expect_error(await api.delete(f"/api/projects/{project.id}", headers=project.engine), 403)
    await expect_error(await api.delete(f"/api/projects/{project.id}"), 401)
    await expect_error(await api.delete("/api/projects/never-was", headers=admin_headers()), 404, "project_not_found")
    assert (await api.get(f"/api/projects/{project.id}/secrets", headers=project.dashboard)).status == 200


async def test_a_legacy_project_key_gets_a_shred_key_from_the_keyring(tmp_path: Path) -> None:
    master = (Secret(Fernet.generate_key().decode()),)
    legacy = KeyRing(master)  # no keystore: the form project keys had before shred keys
    key, wrapped = legacy.new_project_key()
    assert split_wrapped(wrapped)[0] is None
    keyring = KeyRing(master, Keystore(tmp_path / "keys"))
    assert keyring.unwrap(wrapped) == key and not keyring.is_current(wrapped)
    upgraded = keyring.rewrap(wrapped)
    assert split_wrapped(upgraded)[0] is not None and keyring.is_current(upgraded)
    assert keyring.unwrap(upgraded) == key
    with pytest.raises(KeyUnavailable):
        legacy.unwrap(upgraded)  # without the keystore, the inner layer stays shut


def test_the_keystore_keeps_keys_private_and_destroys_them(tmp_path: Path) -> None:
    from service.keystore import ShredKeyMissing

    store = Keystore(tmp_path / "keys")
    shred_id, key = store.create()
    path = tmp_path / "keys" / shred_id
    assert (path.stat().st_mode & 0o777, path.parent.stat().st_mode & 0o777) == (0o600, 0o700)
    assert store.load(shred_id) == key and Fernet(key)
    assert store.destroy(shred_id) and not path.exists()
    assert not store.destroy(shred_id)  # a retry after a failed delete finds it gone
    with pytest.raises(ShredKeyMissing):
        store.load(shred_id)
    with pytest.raises(ShredKeyMissing):
        store.load("../../etc/passwd")  # ids are ours: never a path
