"""The guardrail: a Frontend (Build) var that looks like a private key, or copies one, is refused."""

import sqlite3
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from service.fingerprints import fingerprint, fingerprint_key
from service.guardrail import private_key_kind
from service.settings import Settings
from tests.conftest import CreateProject, Project

pytestmark = pytest.mark.timeout(20)

PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA7\n-----END RSA PRIVATE KEY-----\n"

REFUSED = [
    "sk_live_51HxQ2eKZvKYlo2C0aBcDeFgHiJkLmNoP",
    "sk_test_4eC39HqLyjWDarjtT1zdp7dc",
    "rk_live_51HxQ2eKZvKYlo2C0aBcDeFg",
    "rk_test_51HxQ2eKZvKYlo2C0aBcDeFg",
    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy",
    "xoxp-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy",
    PEM,
    "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI\n-----END PRIVATE KEY-----",
    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----",
    "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEI\n-----END EC PRIVATE KEY-----",
    "  sk_live_with_leading_space",
    "https://example.com/?key=sk_live_51HxQ2eKZvKYlo2C0",
]

ALLOWED = [
    "pk_live_51HxQ2eKZvKYlo2C0aBcDeFgHiJkLmNoP",
    "pk_test_TYooMQauvdEDq54NiTphI7jx",
    "https://api.example.com",
    "true",
    "desk_live_setting",
    "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----",
    "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",
]


@pytest.mark.parametrize("value", REFUSED)
async def test_private_key_shapes_are_refused(api: TestClient, project: Project, value: str) -> None:
    response = await api.put(
        f"/api/projects/{project.id}/frontend-vars/KEY", json={"value": value}, headers=project.dashboard
    )
    assert response.status == 422
    error = (await response.json())["error"]
    assert error["code"] == "looks_like_secret"
    assert "Backend Secret" in error["message"] and "Credential" in error["message"]
    assert value.strip() not in error["message"]
    missing = await api.get(f"/api/projects/{project.id}/frontend-vars/KEY", headers=project.dashboard)
    assert missing.status == 404


@pytest.mark.parametrize("value", ALLOWED)
async def test_public_values_pass(api: TestClient, project: Project, value: str) -> None:
    response = await api.put(
        f"/api/projects/{project.id}/frontend-vars/KEY", json={"value": value}, headers=project.dashboard
    )
    assert response.status == 201, await response.text()


def test_each_refusal_names_what_it_recognised() -> None:
    assert private_key_kind("sk_live_x") == "a Stripe secret key (sk_live_/sk_test_)"
    assert private_key_kind(PEM) == "a PEM private key"
    assert private_key_kind("pk_live_x") is None


async def test_an_exact_copy_of_a_backend_secret_is_refused(api: TestClient, project: Project) -> None:
    value = "internal-token-9b0d4f6c1e"  # no recognisable shape: only the fingerprint can tell
    secret = await api.put(
        f"/api/projects/{project.id}/secrets/INTERNAL_API_TOKEN", json={"value": value}, headers=project.dashboard
    )
    assert secret.status == 201
    refused = await api.put(
        f"/api/projects/{project.id}/frontend-vars/VITE_TOKEN", json={"value": value}, headers=project.dashboard
    )
    assert refused.status == 422
    error = (await refused.json())["error"]
    assert error["code"] == "looks_like_secret"
    assert "INTERNAL_API_TOKEN" in error["message"] and value not in error["message"]
    near = await api.put(
        f"/api/projects/{project.id}/frontend-vars/VITE_TOKEN", json={"value": value + "x"}, headers=project.dashboard
    )
    assert near.status == 201


async def test_an_overwritten_or_deleted_secret_no_longer_blocks_its_old_value(
    api: TestClient, project: Project
) -> None:
    secrets_url = f"/api/projects/{project.id}/secrets/TOKEN"
    vars_url = f"/api/projects/{project.id}/frontend-vars/PUBLIC"
    await api.put(secrets_url, json={"value": "first-value-123"}, headers=project.dashboard)
    await api.put(secrets_url, json={"value": "second-value-456"}, headers=project.dashboard)
    assert (await api.put(vars_url, json={"value": "first-value-123"}, headers=project.dashboard)).status == 201
    assert (await api.put(vars_url, json={"value": "second-value-456"}, headers=project.dashboard)).status == 422
    await api.delete(secrets_url, headers=project.dashboard)
    assert (await api.put(vars_url, json={"value": "second-value-456"}, headers=project.dashboard)).status == 200


async def test_a_secret_of_another_project_does_not_block(api: TestClient, create_project: CreateProject) -> None:
    one, two = await create_project("One"), await create_project("Two")
    await api.put(f"/api/projects/{one.id}/secrets/SHARED", json={"value": "same-value-77"}, headers=one.dashboard)
    response = await api.put(
        f"/api/projects/{two.id}/frontend-vars/SHARED", json={"value": "same-value-77"}, headers=two.dashboard
    )
    assert response.status == 201


async def test_fingerprints_are_keyed_per_project_and_stored_not_values(
    api: TestClient, create_project: CreateProject, settings: Settings
) -> None:
    one, two = await create_project("One"), await create_project("Two")
    for project in (one, two):
        await api.put(
            f"/api/projects/{project.id}/secrets/S", json={"value": "same-value-88"}, headers=project.dashboard
        )
    with sqlite3.connect(Path(settings.db_path)) as conn:
        rows = dict(conn.execute("SELECT project_id, fingerprint FROM secrets WHERE name = 'S'").fetchall())
    assert len(rows[one.id]) == 32 and len(rows[two.id]) == 32
    assert rows[one.id] != rows[two.id]  # the same value, different project keys
    unkeyed = fingerprint(fingerprint_key(b"A" * 43 + b"="), "same-value-88")
    assert unkeyed not in rows.values()
