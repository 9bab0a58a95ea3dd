"""The secrets routes as a dashboard user sees them."""

from aiohttp.test_utils import TestClient

from tests.conftest import Project


async def test_put_creates_then_overwrites_and_never_returns_the_value(api: TestClient, project: Project) -> None:
    url = f"/api/projects/{project.id}/secrets/STRIPE_WEBHOOK_SIGNING_KEY"
    created = await api.put(url, json={"value": "whsec_canary_1"}, headers=project.dashboard)
    overwritten = await api.put(url, json={"value": "whsec_canary_2"}, headers=project.dashboard)
    listed = await api.get(f"/api/projects/{project.id}/secrets", headers=project.dashboard)
    assert (created.status, overwritten.status) == (201, 200)
    assert (await overwritten.json())["version"] == 2
    body = await listed.text()
    assert "STRIPE_WEBHOOK_SIGNING_KEY" in body and "whsec_canary" not in body
