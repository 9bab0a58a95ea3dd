"""Fetching a project's snapshot from the engine endpoint with an execution's token."""

from typing import Final

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


class ExecutionUnknown(ExecutionFinished):
    """The service does not know this execution or its grant (it was pruned, or the database that
    had it is gone): no result could ever be recorded, so run nothing and ack the message."""


class EngineApiError(Exception):
    """The service could not be reached or refused; the message stays pending for a retry."""


class _ErrorDetail(msgspec.Struct, frozen=True):
    code: str = ""


class _ErrorBody(msgspec.Struct, frozen=True):
    error: _ErrorDetail = _ErrorDetail()


_claim_decoder = msgspec.json.Decoder(ClaimReply)
_error_decoder = msgspec.json.Decoder(_ErrorBody)
_encoder = msgspec.json.Encoder()
# What the claim route answers for a grant it does not know (401) or a grant of another execution
# (404). Only the service's own error codes count: a 401 or 404 from anything else (a wrong API
# URL, a proxy) leaves the message pending for a retry.
_UNKNOWN_CODES: Final = frozenset({"invalid_token", "execution_not_found"})


def _error_code(body: bytes) -> str:
    try:
        return _error_decoder.decode(body).error.code
    except msgspec.DecodeError:
        return ""


class ExecutionApi:
    """Claiming an execution and recording its result, with the execution's own grant."""

    def __init__(self, session: aiohttp.ClientSession, api_url: str, timeout_s: float) -> None:
        self._session = session
        self._api_url = api_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def claim(self, request: ExecutionRequest, worker: str, *, redelivered: bool = True) -> ClaimReply:
        """Raises ExecutionFinished (409), ExecutionUnknown (the service's 401/404) or EngineApiError.
        The worker claims only messages it reclaimed from another worker: `redelivered`."""
        payload = _encoder.encode({"worker": worker, "redelivered": redelivered})
        body = await self._post(request, "claim", payload, unknown_is_final=True)
        return _claim_decoder.decode(body)

    async def record(self, request: ExecutionRequest, result: ExecutionResult) -> None:
        await self._post(request, "result", _encoder.encode(result))

    async def _post(
        self, request: ExecutionRequest, action: str, payload: bytes, *, unknown_is_final: bool = False
    ) -> bytes:
        url = f"{self._api_url}/api/engine/{request.project}/executions/{request.id}/{action}"
        headers = {"Authorization": f"Bearer {request.grant}", "Content-Type": "application/json"}
        try:
            async with self._session.post(url, data=payload, headers=headers, timeout=self._timeout) as response:
                body = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise EngineApiError(f"{action}: the secrets API is unreachable ({type(exc).__name__})") from None
        if response.status == 409:
            raise ExecutionFinished(request.id)
        if unknown_is_final and response.status in (401, 404) and (code := _error_code(body)) in _UNKNOWN_CODES:
            raise ExecutionUnknown(f"{action}: the secrets API answered {response.status} {code}")
        if response.status != 200:
            raise EngineApiError(f"{action}: the secrets API answered {response.status}")
        return body
