"""Fetching a project's snapshot from the engine endpoint with an execution's token."""

import aiohttp
import msgspec

from contract.engine import EngineSnapshot, snapshot_decoder
from worker.errors import SnapshotUnavailable


class EngineClient:
    def __init__(self, session: aiohttp.ClientSession, api_url: str, timeout_s: float) -> None:
        self._session = session
        self._api_url = api_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def fetch(self, project: str, token: str) -> EngineSnapshot:
        url = f"{self._api_url}/api/engine/{project}/secrets"
        headers = {"Authorization": f"Bearer {token}"}
        try:
            async with self._session.get(url, headers=headers, timeout=self._timeout) as response:
                body = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SnapshotUnavailable(f"the secrets API is unreachable ({type(exc).__name__})") from None
        if response.status != 200:
            raise SnapshotUnavailable(f"the secrets API refused the snapshot of {project!r} ({response.status})")
        try:
            return snapshot_decoder.decode(body)
        except msgspec.DecodeError:
            raise SnapshotUnavailable("the secrets API sent a snapshot this worker cannot read") from None
