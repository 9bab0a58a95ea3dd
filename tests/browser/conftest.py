"""A real headless Chromium (Debian's `chromium`, driven by Playwright) against a real `python -m service`.

Playwright's own browser download is never used: the browser is the system's /usr/bin/chromium,
which .ci/run installs. Without it (or without Playwright) these tests are skipped, saying why;
in CI (CI set) a missing chromium fails them instead.
"""

import os
import secrets as random
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.processes import REPO_ROOT, ServiceProcess, service_process

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
CHROMIUM_FOUND = CHROMIUM.exists()
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
OUTPUT_DIR = REPO_ROOT / "test-output"


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    if not CHROMIUM_FOUND:
        reason = f"browser tests need Debian's chromium at {CHROMIUM} (apt-get install -y chromium; .ci/run does it)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}: in CI they must run, not be skipped")
        pytest.skip(reason)
    async_api = pytest.importorskip("playwright.async_api", reason="browser tests need Playwright (the dev extras)")
    async with async_api.async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
async def service(
    tmp_path: Path, redis_url: str, prefix: str, master_key: str, redis_client: Any
) -> AsyncIterator[ServiceProcess]:
    """The real service as a user runs it, on a free port, its streams under this test's prefix."""
    admin_token = "browser-admin-" + random.token_hex(8)
    running = service_process(
        tmp_path, redis_url=redis_url, prefix=prefix, master_key=master_key, admin_token=admin_token
    )
    running.process.start()
    try:
        await running.wait_healthy()
        yield running
    finally:
        running.process.stop()


async def create_project(service: ServiceProcess, name: str) -> dict[str, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{service.url}/api/projects",
            json={"name": name},
            headers={"Authorization": f"Bearer {service.admin_token}"},
        ) as response,
    ):
        assert response.status == 201, await response.text()
        body: dict[str, str] = await response.json()
        return body


def keep_screenshot(path: Path) -> None:
    """Screenshots live in the test's folder; a copy goes to test-output/ (gitignored) to look at."""
    OUTPUT_DIR.mkdir(exist_ok=True)
    shutil.copy(path, OUTPUT_DIR / path.name)
