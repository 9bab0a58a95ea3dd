"""Fetching a project's snapshot from the engine endpoint with an execution's token."""

import aiohttp
import msgspec

from contract.engine import EngineSnapshot, snapshot_decoder
from contract.executions import ClaimReply, ExecutionRequest, ExecutionResult
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


class ExecutionFinished(Exception):
    """The service already holds a result for this execution: run nothing, ack the message."""


class EngineApiError(Exception):
    """The service could not be reached or refused; the message stays pending for a retry."""


_claim_decoder = msgspec.json.Decoder(ClaimReply)
_encoder = msgspec.json.Encoder()


class ExecutionApi:
    """Claiming an execution and recording its result, with the execution's own grant."""

    def __init__(self, session: aiohttp.ClientSession, api_url: str, timeout_s: float) -> None:
        self._session = session
        self._api_url = api_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def claim(self, request: ExecutionRequest, worker: str) -> ClaimReply:
        body = await self._post(request, "claim", _encoder.encode({"worker": worker}))
        return _claim_decoder.decode(body)

    async def record(self, request: ExecutionRequest, result: ExecutionResult) -> None:
        await self._post(request, "result", _encoder.encode(result))

    async def _post(self, request: ExecutionRequest, action: str, payload: bytes) -> bytes:
        url = f"{self._api_url}/api/engine/{request.project}/executions/{request.id}/{action}"
        headers = {"Authorization": f"Bearer {request.grant}", "Content-Type": "application/json"}
        try:
            async with self._session.post(url, data=payload, headers=headers, timeout=self._timeout) as response:
                body = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise EngineApiError(f"{action}: the secrets API is unreachable ({type(exc).__name__})") from None
        if response.status == 409:
            raise ExecutionFinished(request.id)
        if response.status != 200:
            raise EngineApiError(f"{action}: the secrets API answered {response.status}")
        return body
