"""GET /api/engine/{p}/secrets: names, versions, the revision and ciphertexts; never a plaintext."""

import pytest
from aiohttp.test_utils import TestClient
from cryptography.fernet import Fernet

from contract.sealing import SealError, open_sealed
from tests.conftest import CreateProject, Project
from tests.support.api import expect_error

pytestmark = pytest.mark.timeout(15)

VALUES = {"STRIPE_KEY": "canary-engine-stripe-91ab", "DB_PASSWORD": "canary-engine-db-ünï-😀"}


async def _put_all(api: TestClient, project: Project) -> None:
    for name, value in VALUES.items():
        response = await api.put(
            f"/api/projects/{project.id}/secrets/{name}", json={"value": value}, headers=project.dashboard
        )
        assert response.status == 201


async def test_the_engine_endpoint_returns_ciphertexts_only(api: TestClient, project: Project) -> None:
    await _put_all(api, project)
    response = await api.get(f"/api/engine/{project.id}/secrets", headers=project.engine)
    assert response.status == 200
    assert "no-store" in response.headers.get("Cache-Control", "")
    text = await response.text()
    for value in VALUES.values():
        assert value not in text
        assert value.encode("unicode_escape").decode() not in text
    body = await response.json()
    assert body["project"] == project.id
    assert body["revision"] == 2
    assert sorted((s["name"], s["version"]) for s in body["secrets"]) == [("DB_PASSWORD", 1), ("STRIPE_KEY", 1)]
    assert all(set(s) == {"name", "version", "ciphertext"} for s in body["secrets"])


async def test_the_ciphertexts_open_only_in_their_own_place(api: TestClient, project: Project) -> None:
    """What the worker does with the answer: each value opens under its own name, nowhere else."""
    await _put_all(api, project)
    body = await (await api.get(f"/api/engine/{project.id}/secrets", headers=project.engine)).json()
    fernet = Fernet(body["data_key"])
    by_name = {s["name"]: s["ciphertext"] for s in body["secrets"]}
    for name, value in VALUES.items():
        assert open_sealed(fernet, by_name[name], project.id, "secret", name) == value
    with pytest.raises(SealError):  # a row's ciphertext copied under another name
        open_sealed(fernet, by_name["STRIPE_KEY"], project.id, "secret", "DB_PASSWORD")


async def test_each_project_has_its_own_key(api: TestClient, create_project: CreateProject) -> None:
    one, two = await create_project("One"), await create_project("Two")
    await api.put(f"/api/projects/{one.id}/secrets/K", json={"value": "one"}, headers=one.dashboard)
    body_one = await (await api.get(f"/api/engine/{one.id}/secrets", headers=one.engine)).json()
    body_two = await (await api.get(f"/api/engine/{two.id}/secrets", headers=two.engine)).json()
    assert body_one["data_key"] != body_two["data_key"]
    with pytest.raises(SealError):  # project one's ciphertext under project two's key
        open_sealed(Fernet(body_two["data_key"]), body_one["secrets"][0]["ciphertext"], two.id, "secret", "K")


async def test_an_overwrite_and_a_delete_show_in_the_next_answer(api: TestClient, project: Project) -> None:
    await _put_all(api, project)
    base = f"/api/projects/{project.id}/secrets"
    await api.put(f"{base}/STRIPE_KEY", json={"value": "rotated"}, headers=project.dashboard)
    await api.delete(f"{base}/DB_PASSWORD", headers=project.dashboard)
    body = await (await api.get(f"/api/engine/{project.id}/secrets", headers=project.engine)).json()
    assert body["revision"] == 4
    assert [(s["name"], s["version"]) for s in body["secrets"]] == [("STRIPE_KEY", 2)]
    fernet = Fernet(body["data_key"])
    assert open_sealed(fernet, body["secrets"][0]["ciphertext"], project.id, "secret", "STRIPE_KEY") == "rotated"


async def test_an_empty_project_has_revision_zero_and_no_secrets(api: TestClient, project: Project) -> None:
    body = await (await api.get(f"/api/engine/{project.id}/secrets", headers=project.engine)).json()
    assert (body["revision"], body["secrets"]) == (0, [])


async def test_the_engine_token_of_another_project_gets_404(api: TestClient, create_project: CreateProject) -> None:
    one, two = await create_project("One"), await create_project("Two")
    await api.put(f"/api/projects/{one.id}/secrets/K", json={"value": "canary-engine-cross"}, headers=one.dashboard)
    response = await api.get(f"/api/engine/{one.id}/secrets", headers=two.engine)
    await expect_error(response, 404)
    assert "canary-engine-cross" not in await response.text()
