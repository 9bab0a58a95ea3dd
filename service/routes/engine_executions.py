"""The worker's side of an execution over HTTP, authorised by that execution's grant
(`Authorization: Bearer bsg_...`). Our worker reports results on the results stream
(service.results) and claims only messages it reclaimed; these routes serve that claim and
workers that report over HTTP.

POST /api/engine/{p}/executions/{id}/claim   body {} or {"worker": "name", "redelivered": true}
    -> 200 ClaimReply {"attempt": n}: running, attempt + 1 on every claim (at least 2 when
       redelivered: the first delivery may have run unclaimed)
    -> 409 execution_finished: it has a result (or its deadline passed: it is now timed out)
POST /api/engine/{p}/executions/{id}/result  body ExecutionResult (masked by the worker)
    -> 200 {"id", "status"}: recorded, and the caller waiting for it is answered
    -> 409 execution_finished: a result was recorded before (the first one wins)
401 for an unknown grant, 404 for a grant of another execution (a worker whose claim gets either
acks the message and runs nothing: no result could be recorded). A result is accepted after the
grant expired, as long as none came before, so a slow execution still leaves its record.
"""

from typing import Final, TypeVar

import msgspec
from aiohttp import web

from contract.executions import GRANT_PREFIX, ClaimReply, ExecutionResult
from service.auth import bearer_token, hash_token
from service.errors import Forbidden, InvalidField, MalformedBody, PayloadTooLarge, UnsupportedMediaType
from service.openapi import Auth, describe
from service.responses import json_response
from service.state import AUTH, DISPATCH, WRITER
from service.store import executions as store

routes = web.RouteTableDef()
T = TypeVar("T")

RESULT_MAX_BYTES: Final = 8 * 1024 * 1024  # node outputs may be large; the dashboard body limit is not theirs
WORKER_NAME_MAX: Final = 200


class Claim(msgspec.Struct, frozen=True, kw_only=True):
    worker: str = ""
    # A message reclaimed from a dead worker: it was delivered (and maybe run, unclaimed) before,
    # so this is at least the second attempt.
    redelivered: bool = False


class Recorded(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    status: str


async def _grant_hash(request: web.Request) -> bytes:
    """The hash of the execution's grant; a known token of another kind (admin, dashboard, engine) is 403."""
    token = bearer_token(request)
    if not token.startswith(GRANT_PREFIX):
        await request.app[AUTH].principal(request)  # 401 for an unknown token
        raise Forbidden("this route needs the grant of the execution", code="wrong_token_scope")
    return hash_token(token)


async def _read_limited(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"the body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _decode(raw: bytes, body_type: type[T], content_type: str) -> T:
    if content_type != "application/json":
        raise UnsupportedMediaType("send the body as JSON with 'Content-Type: application/json'")
    try:
        return msgspec.json.decode(raw, type=body_type)
    except msgspec.ValidationError as exc:
        raise InvalidField(f"invalid body: {exc}") from None
    except msgspec.DecodeError:
        raise MalformedBody("the body is not valid JSON") from None


@routes.post("/api/engine/{project}/executions/{id}/claim")
@describe(
    "A worker claims an execution it took from the stream (the attempt grows on each claim)",
    auth=Auth.GRANT,
    body=Claim,
    body_required=False,
    responses={200: ClaimReply},
    errors=(409,),
)
async def claim(request: web.Request) -> web.Response:
    project_id, execution_id = request.match_info["project"], request.match_info["id"]
    grant_hash = await _grant_hash(request)
    raw = await _read_limited(request, 4096)
    body = _decode(raw, Claim, request.content_type) if raw.strip() else Claim()
    # A claim lost with the machine costs nothing: the message is reclaimed and claimed again.
    claim = store.claim_execution(
        project_id, execution_id, grant_hash, body.worker[:WORKER_NAME_MAX], redelivered=body.redelivered
    )
    outcome = await request.app[WRITER].submit(claim, durable=False)
    if outcome.attempt is None:
        raise store.execution_finished(execution_id)
    return json_response(ClaimReply(attempt=outcome.attempt))


@routes.post("/api/engine/{project}/executions/{id}/result")
@describe(
    "A worker records an execution's (masked) result; the first result wins",
    auth=Auth.GRANT,
    body=ExecutionResult,
    responses={200: Recorded},
    errors=(409,),
)
async def result(request: web.Request) -> web.Response:
    project_id, execution_id = request.match_info["project"], request.match_info["id"]
    grant_hash = await _grant_hash(request)
    reported = _decode(await _read_limited(request, RESULT_MAX_BYTES), ExecutionResult, request.content_type)
    reported = msgspec.structs.replace(reported, worker=reported.worker[:WORKER_NAME_MAX])
    record = await request.app[WRITER].submit(store.record_result(project_id, execution_id, grant_hash, reported))
    request.app[DISPATCH].resolve(record)
    return json_response(Recorded(id=record.id, status=record.status))
