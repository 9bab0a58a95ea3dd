"""Executions: the request the service puts on the executions stream, and what a worker reports.

Flow (one service, many workers):
1. The service records an execution (status "queued"), mints a grant for it, and XADDs an
   `ExecutionRequest` to `<prefix>:executions` (field `m`).
2. A worker reads it through the consumer group `EXECUTIONS_GROUP` and runs its nodes, reading
   secrets with the grant (`GET /api/engine/{p}/secrets`). An execution still running after
   `STARTED_NOTICE_S` is reported `StartedReport` (the record says "running").
3. It hands the masked `ExecutionResult` over as a `ResultReport`: one MULTI adds it to
   `<prefix>:results` and XACKs the request, so a result is never lost between the two. The
   service reads the results stream through the group `RESULTS_GROUP`, records each result (the
   first one wins), answers the caller waiting for it, and only then XACKs the report.
4. A message left pending by a dead worker is reclaimed (XAUTOCLAIM) by another after
   `RECLAIM_AFTER_MS`. A reclaimed execution is claimed first over HTTP
   (`POST /api/engine/{p}/executions/{id}/claim`, Bearer grant): 200 `ClaimReply` with the attempt,
   or 409 when it already finished (the worker acks and skips it). Workers of other make may also
   report over HTTP (`POST .../result`, Bearer grant, body `ExecutionResult`).
The grant is scoped to the project and expires with the execution.
"""

from typing import Annotated, Any, Final, Literal

import msgspec

EXECUTIONS_GROUP: Final = "workers"
RESULTS_GROUP: Final = "service"
# A Unix time a worker reports (0: not given): bounded, as the service turns it into RFC 3339.
UnixTime = Annotated[float, msgspec.Meta(ge=0, le=253402300799)]  # up to 9999-12-31T23:59:59Z
Attempt = Annotated[int, msgspec.Meta(ge=0, le=1_000_000)]  # stored as an SQLite INTEGER
RESULTS_MAXLEN: Final = 100_000  # reports the service has not read yet are far fewer
STARTED_NOTICE_S: Final = 0.2  # shorter executions go straight from "queued" to their result
FIELD_MESSAGE: Final = b"m"
RECLAIM_AFTER_MS: Final = 15_000
GRANT_PREFIX: Final = "bsg_"


class ExecutionInput(msgspec.Struct, frozen=True, kw_only=True):
    """What `${ input... }` reads. Header names are lower-case; `raw_body` is base64 of the bytes."""

    method: str = "POST"
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    query: dict[str, str] = msgspec.field(default_factory=dict)
    body: Any = None
    raw_body: str = ""


class ExecutionRequest(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    project: str
    workflow: str
    workflow_version: int
    definition: dict[str, Any]
    input: ExecutionInput
    grant: str
    deadline: float  # Unix time after which the caller no longer waits
    # The project's revision when the execution was created: the worker serves nothing older, so a
    # change committed before a webhook arrived is what that webhook's nodes see.
    revision: int = 0

    def __repr__(self) -> str:
        return f"ExecutionRequest(id={self.id!r}, project={self.project!r}, workflow={self.workflow!r})"


class ClaimReply(msgspec.Struct, frozen=True, kw_only=True):
    attempt: int


class ErrorInfo(msgspec.Struct, frozen=True, kw_only=True):
    code: str
    message: str
    node_id: str | None = None
    # what a webhook caller should get, e.g. 400 for invalid_signature (bounded: it is stored as an SQLite INTEGER)
    http_status: Annotated[int, msgspec.Meta(ge=100, le=599)] | None = None


class NodeRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    type: str
    status: Literal["succeeded", "failed", "skipped"]
    started_at: float = 0.0
    finished_at: float = 0.0
    output: Any = None
    error: ErrorInfo | None = None


class HttpReply(msgspec.Struct, frozen=True, kw_only=True):
    """What a `respond` node sets: the webhook's HTTP response."""

    status: int = 200
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    body: Any = None


class SecretRead(msgspec.Struct, frozen=True, kw_only=True):
    """One engine read, for the audit log: which node read which secret or credential. Never a value."""

    node_id: str
    name: str
    kind: Literal["secret", "credential"] = "secret"


class ExecutionResult(msgspec.Struct, frozen=True, kw_only=True):
    status: Literal["succeeded", "failed"]
    nodes: list[NodeRecord] = msgspec.field(default_factory=list)
    output: Any = None
    response: HttpReply | None = None
    error: ErrorInfo | None = None
    worker: str = ""
    attempt: Attempt = 1
    started_at: UnixTime = 0.0
    finished_at: UnixTime = 0.0
    reads: list[SecretRead] = msgspec.field(default_factory=list)


class Report(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind"):
    """A worker's report on one execution, authenticated by the execution's grant."""

    id: str
    project: str
    grant: str

    def __repr__(self) -> str:  # the grant is a credential: never in a log line
        return f"{type(self).__name__}(id={self.id!r}, project={self.project!r})"


class StartedReport(Report, frozen=True, kw_only=True, tag="started"):
    worker: str = ""
    attempt: Attempt = 1
    started_at: UnixTime = 0.0


class ResultReport(Report, frozen=True, kw_only=True, tag="result"):
    result: ExecutionResult


request_encoder: Final = msgspec.json.Encoder()
request_decoder: Final = msgspec.json.Decoder(ExecutionRequest)
result_decoder: Final = msgspec.json.Decoder(ExecutionResult)
report_encoder: Final = msgspec.json.Encoder()
report_decoder: Final = msgspec.json.Decoder(StartedReport | ResultReport)
