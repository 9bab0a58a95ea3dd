"""Fixtures that build real apps on a real Redis, each test isolated by its own stream prefix.

REDIS_URL (default redis://127.0.0.1:6379/0) names the Redis the tests use. Every test gets a
unique prefix, so its streams never meet another test's, and its keys are deleted afterwards.
"""

import os
import secrets as random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis
from aiohttp.test_utils import TestClient
from cryptography.fernet import Fernet

from contract.config import Secret
from contract.streams import Streams
from service.app import create_app
from service.settings import Settings

ADMIN_TOKEN = "test-admin-" + random.token_hex(8)


@pytest.fixture
def redis_url() -> str:
    return os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def prefix() -> str:
    return f"test-{random.token_hex(6)}"


@pytest.fixture
def streams(prefix: str) -> Streams:
    return Streams(prefix)


@pytest.fixture
async def redis_client(redis_url: str, prefix: str) -> AsyncIterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture
def master_key() -> str:
    return Fernet.generate_key().decode()


@pytest.fixture
def settings(tmp_path: Path, redis_url: str, prefix: str, master_key: str) -> Settings:
    return Settings(
        master_keys=(Secret(master_key),),
        db_path=tmp_path / "backend-secrets.db",
        redis_url=redis_url,
        admin_token=Secret(ADMIN_TOKEN),
        stream_prefix=prefix,
    )


@pytest.fixture
async def api(aiohttp_client: Callable[..., Awaitable[TestClient]], settings: Settings) -> TestClient:
    """The real app on a real port, with SQLite in a temporary folder and the real Redis."""
    return await aiohttp_client(create_app(settings))


def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass(frozen=True)
class Project:
    id: str
    dashboard_token: str
    engine_token: str

    @property
    def dashboard(self) -> dict[str, str]:
        return bearer(self.dashboard_token)

    @property
    def engine(self) -> dict[str, str]:
        return bearer(self.engine_token)


CreateProject = Callable[..., Awaitable[Project]]


@pytest.fixture
def create_project(api: TestClient) -> CreateProject:
    async def create(name: str = "Shop", **extra: Any) -> Project:
        response = await api.post("/api/projects", json={"name": name, **extra}, headers=admin_headers())
        assert response.status == 201, await response.text()
        body = await response.json()
        return Project(body["id"], body["dashboard_token"], body["engine_token"])

    return create


@pytest.fixture
async def project(create_project: CreateProject) -> Project:
    return await create_project()
