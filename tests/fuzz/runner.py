"""The fuzzing side of tests/fuzz: schemathesis cases for one operation at a time, in a worker process.

`fuzz_operation(target, label)` runs in a process of its own (tests/fuzz/test_openapi_fuzz.py
spreads the operations over a small process pool: generating cases costs more CPU than answering
them). It loads the live document, draws `Plan.positive` schema-valid and `Plan.negative`
schema-invalid cases with hypothesis, sends each with a real token (or, for a case whose token
schemathesis itself negated, with the garbage it generated), and checks every answer:

- schemathesis' checks: not a server error, status code and content type documented, body
  conforming to the response schema, and every invalid case refused with a 4xx;
- stricter, our own: the status is one the operation lists explicitly (the `default` response, for
  any other status, only documents the error shape), and no 5xx at all except the documented 504
  `execution_timeout` of the two routes that wait for a workflow (no worker runs during fuzzing).

Failures are collected, not raised, so one run counts every request and reports every distinct
failure with schemathesis' curl line to reproduce it.
"""

import json
import time
import traceback
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import hypothesis
import hypothesis.errors
import redis
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from contract.executions import FIELD_MESSAGE, request_decoder

CHECKS: Final = [
    not_a_server_error,  # first: left out for a documented 504 (see _check)
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
# "Every invalid request refused with a 4xx": any 4xx, not only schemathesis' default list.
CONFIG: Final = {"checks": {"negative_data_rejection": {"expected-statuses": ["4XX"]}}}
WAITING_ROUTES: Final = frozenset(
    {"POST /hooks/{project}/{workflow}", "POST /api/projects/{project}/workflows/{name}/executions"}
)
REQUEST_TIMEOUT_S: Final = 15.0
MAX_REPORTED: Final = 5
GRANT_BATCH: Final = 3  # executions queued at a time for the grant-authorised routes
GRANT_FRESH_S: Final = 0.15  # an execution is claimable until its deadline (BACKEND_SECRETS_HOOK_TIMEOUT_S)


@dataclass(frozen=True)
class Target:
    """The live service and what the fixture seeded in it: everything a worker process needs."""

    url: str
    redis_url: str
    prefix: str
    admin: str
    project: str
    dashboard: str
    engine: str
    rotate_project: str
    rotate_dashboard: str
    victims: tuple[str, ...]
    session_cookie: str
    grant_workflow: str
    # which known names a positive case's {name}/{workflow}/{id}/{file} may take, by plan key
    names: Mapping[str, tuple[str, ...]]


@dataclass(frozen=True)
class Plan:
    """How one operation is fuzzed. `floor` is the requests it must total (1,000 unless `reason`)."""

    positive: int
    negative: int
    identities: tuple[str, ...]  # admin, dashboard, engine, grant, cookie, rotate_admin, rotate_dashboard, none
    project: str = "main"  # main | rotate | victims
    names: str | None = None  # key into Target.names for the route's second path parameter
    floor: int = 1000
    reason: str | None = None  # why this operation totals fewer requests than 1,000
    waits: bool = False  # some of its cases wait out a workflow's time-out
    valid_body: str | None = None  # key into VALID_BODIES: a third of the positive cases get such a body

    @property
    def cost(self) -> float:
        """A rough relative run time, to start the longest first."""
        return (self.positive + self.negative) * (4 if self.waits else 1)


@dataclass
class OpResult:
    label: str
    requests: int = 0
    seconds: float = 0.0
    statuses: Counter[int] = field(default_factory=Counter)
    positive_statuses: Counter[int] = field(default_factory=Counter)  # what schema-valid cases got
    positive_refusals: Counter[str] = field(default_factory=Counter)  # their 4xx codes: checks the schema omits
    by_mode: Counter[str] = field(default_factory=Counter)
    failures: dict[str, str] = field(default_factory=dict)  # a key per distinct failure -> its report
    failure_count: int = 0
    timeouts_504: int = 0

    def fail(self, key: str, report: str) -> None:
        self.failure_count += 1
        if key not in self.failures and len(self.failures) < MAX_REPORTED:
            self.failures[key] = report[:4000]


_SECOND_PARAM: Final = ("name", "workflow", "id", "file")


class _Session:
    """Per-process state: the loaded schema, an HTTP session, documented statuses and fresh grants."""

    schema: Any = None
    documented: dict[str, set[str] | None]

    def __init__(self, target: Target) -> None:
        self.target = target
        self.http = requests.Session()
        self.http.trust_env = False  # loopback only: no proxy or netrc lookups on every request
        document = self.http.get(f"{target.url}/api/openapi.json", timeout=REQUEST_TIMEOUT_S).json()
        self.documented = {
            f"{method.upper()} {path}": _listed_statuses(operation["responses"])
            for path, methods in document["paths"].items()
            for method, operation in methods.items()
        }
        self.schema = _load(document, with_security=True)
        # Positive cases carry real tokens, so generating security parameters for them is wasted work;
        # negative cases keep them: a negated Authorization header or cookie is sent as generated.
        self.operations = {
            GenerationMode.POSITIVE: _operations(_load(document, with_security=False)),
            GenerationMode.NEGATIVE: _operations(self.schema),
        }
        self.redis = redis.Redis.from_url(target.redis_url)
        self._grants: list[tuple[str, str]] = []
        self._grants_at = 0.0

    def grant(self, pick: int) -> tuple[str, str]:
        """(execution id, grant) of a recently queued execution (claimable until its short deadline)."""
        if not self._grants or time.monotonic() - self._grants_at > GRANT_FRESH_S * 4:
            self._grants = self._queue_executions(GRANT_BATCH)
            self._grants_at = time.monotonic()
        return self._grants[pick % len(self._grants)]

    def _queue_executions(self, count: int) -> list[tuple[str, str]]:
        t = self.target
        url = f"{t.url}/api/projects/{t.project}/workflows/{t.grant_workflow}/executions?wait=false"
        ids = []
        for _ in range(count):
            response = self.http.post(url, headers=_bearer(t.dashboard), json={}, timeout=REQUEST_TIMEOUT_S)
            assert response.status_code == 202, response.text
            ids.append(response.json()["id"])
        found: dict[str, str] = {}
        for _, fields in self.redis.xrevrange(f"{t.prefix}:executions", count=500):  # other processes queue too
            request = request_decoder.decode(fields[FIELD_MESSAGE])
            found[request.id] = request.grant
            if set(ids) <= set(found):
                break
        return [(execution_id, found[execution_id]) for execution_id in ids]


def _listed_statuses(responses: dict[str, Any]) -> set[str] | None:
    """The statuses an operation lists; None when its `default` is a real answer (a webhook's reply is
    whatever its workflow says) rather than the error shape every other status would have."""
    default = responses.get("default", {}).get("content", {}).get("application/json", {}).get("schema", {})
    if default.get("$ref", "").endswith("/ErrorBody"):
        return set(responses) - {"default"}
    return None


def _load(document: dict[str, Any], *, with_security: bool) -> Any:
    config = {**CONFIG, "generation": {"with-security-parameters": with_security}}
    return schemathesis.openapi.from_dict(document, config=schemathesis.Config.from_dict(config))


def _operations(schema: Any) -> dict[str, Any]:
    return {f"{op.method.upper()} {op.path}": op for op in (result.ok() for result in schema.get_all_operations())}


_SESSION: _Session | None = None


def _session(target: Target) -> _Session:
    global _SESSION
    if _SESSION is None or _SESSION.target != target:
        _SESSION = _Session(target)
    return _SESSION


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _project(target: Target, plan: Plan, pick: int) -> str:
    if plan.project == "rotate":
        return target.rotate_project
    if plan.project == "victims":
        return target.victims[pick % len(target.victims)]
    return target.project


def _credentials(
    session: _Session, identity: str, case: schemathesis.Case, pick: int
) -> tuple[dict[str, str], dict[str, str]]:
    """Headers and cookies that authenticate `case` as `identity` (a grant also pins the execution id)."""
    t = session.target
    if identity == "cookie":
        return {}, {"bs_session": t.session_cookie}
    if identity == "none":
        return {}, {}
    if identity == "grant":
        execution_id, grant = session.grant(pick)
        if case.meta is not None and case.meta.generation.mode.is_positive and "id" in (case.path_parameters or {}):
            case.path_parameters["id"] = execution_id
        return _bearer(grant), {}
    token = {
        "admin": t.admin,
        "dashboard": t.dashboard,
        "engine": t.engine,
        "rotate_admin": t.admin,
        "rotate_dashboard": t.rotate_dashboard,
    }[identity]
    return _bearer(token), {}


def _shape(case: schemathesis.Case, plan: Plan, target: Target, pick: int) -> None:
    """Point a positive case at seeded records half of the time (the rest keeps generated names)."""
    params = case.path_parameters
    if params is None:
        return
    if "project" in params:
        params["project"] = _project(target, plan, pick)
    if plan.names and (pick >> 8) % 2 == 0:
        known = target.names[plan.names]
        for key in _SECOND_PARAM:
            if key in params:
                params[key] = known[(pick >> 9) % len(known)]


def _workflow_body(generated: Any, pick: int) -> Any:
    """A workflow that saves: the generated trigger, one respond node answering the generated body."""
    trigger = generated.get("trigger") if isinstance(generated, dict) else None
    reply = {"id": f"reply-{pick}", "type": "respond", "config": {"status": 200 + pick % 100, "body": generated}}
    return {"nodes": [reply], **({"trigger": trigger} if trigger is not None else {})}


def _credential_body(generated: Any, pick: int) -> Any:
    if pick % 2:
        return {"type": "http_bearer", "fields": {"token": f"tok_{pick:x}"}}
    return {"type": "http_basic", "fields": {"username": f"user{pick}", "password": f"pw-{pick:x}"}}


# The schema of these bodies is wider than what saves (node configs and credential fields are checked
# against their type), so few generated ones would get past validation to the store without these.
VALID_BODIES: Final = {"workflow": _workflow_body, "credential": _credential_body}


def _sign_in_body(case: schemathesis.Case, target: Target, pick: int) -> None:
    """POST /api/session: a real token in a third of the positive cases (dashboard, engine or admin)."""
    if isinstance(case.body, dict) and "token" in case.body and (pick >> 8) % 3 == 0:
        case.body["token"] = (target.dashboard, target.engine, target.admin)[(pick >> 10) % 3]


def _check(
    session: _Session, result: OpResult, case: schemathesis.Case, response: Any, headers: dict[str, str]
) -> None:
    status = response.status_code
    result.statuses[status] += 1
    timeout = status == 504 and result.label in WAITING_ROUTES and _code(response) == "execution_timeout"
    try:  # the documented 504 of a workflow no worker ran is counted apart, not as a server error
        case.validate_response(response, checks=CHECKS[1:] if timeout else CHECKS, headers=headers)
    except (FailureGroup, Failure) as exc:
        names = sorted({type(f).__name__ for f in getattr(exc, "exceptions", [exc])})
        result.fail(f"{'+'.join(names)} {status}", str(exc))
    documented = session.documented[result.label]
    if documented is not None and str(status) not in documented:
        result.fail(
            f"undocumented {status}",
            f"{result.label} answered {status}, which it does not list (only {sorted(documented)}):\n"
            f"{case.as_curl_command(headers=headers)}\n{response.text[:500]}",
        )
    if status >= 500:
        if timeout:
            result.timeouts_504 += 1
        else:
            result.fail(f"5xx {status}", f"{status}: {case.as_curl_command(headers=headers)}\n{response.text[:500]}")


def _code(response: Any) -> str | None:
    try:
        return str(json.loads(response.text)["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return None


def _run_mode(session: _Session, plan: Plan, result: OpResult, mode: GenerationMode, examples: int) -> None:
    target = session.target
    operation = session.operations[mode][result.label]
    fixed = {"project": _project(target, plan, 0)} if "{project}" in operation.path else None
    strategy = operation.as_strategy(generation_mode=mode, path_parameters=fixed)

    @hypothesis.settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    @hypothesis.given(case=strategy, pick=st.integers(0, 1 << 20))
    def send(case: schemathesis.Case, pick: int) -> None:
        identity = plan.identities[pick % len(plan.identities)]
        negated_auth = session.schema.is_security_param_negated(case)
        if mode is GenerationMode.POSITIVE:
            _shape(case, plan, target, pick)
            if plan.valid_body and (pick >> 12) % 3 == 0:
                case.body = VALID_BODIES[plan.valid_body](case.body, pick)
            if result.label == "POST /api/session":
                _sign_in_body(case, target, pick)
        try:
            headers, cookies = ({}, {}) if negated_auth else _credentials(session, identity, case, pick)
        except Exception as exc:  # queueing an execution for its grant failed: the service's fault too
            result.fail(f"setup {type(exc).__name__}", repr(exc))
            return
        try:
            response = case.call(
                base_url=target.url, session=session.http, headers=headers, cookies=cookies, timeout=REQUEST_TIMEOUT_S
            )
        except requests.RequestException as exc:
            result.fail(f"transport {type(exc).__name__}", f"{exc!r}\n{case.as_curl_command(headers=headers)}")
            return
        result.requests += 1
        result.by_mode[mode.value] += 1
        if mode is GenerationMode.POSITIVE:
            result.positive_statuses[response.status_code] += 1
            if 400 <= response.status_code < 500:
                result.positive_refusals[f"{response.status_code} {_code(response)}"] += 1
        _check(session, result, case, response, headers)

    try:
        send()
    except hypothesis.errors.Unsatisfiable:
        result.fail(f"unsatisfiable {mode.value}", f"{result.label}: no {mode.value} case could be generated")


def fuzz_operation(target: Target, label: str, plan: Plan) -> OpResult:
    """Fuzz one operation per its plan; never raises for what the service answers (see OpResult)."""
    session = _session(target)
    result = OpResult(label)
    started = time.monotonic()
    for mode, examples in ((GenerationMode.POSITIVE, plan.positive), (GenerationMode.NEGATIVE, plan.negative)):
        if examples:
            try:
                _run_mode(session, plan, result, mode, examples)
            except Exception:  # reported with the operation, not as a crash of the whole pool
                result.fail(f"crash {mode.value}", traceback.format_exc())
    result.seconds = time.monotonic() - started
    return result


# After the fuzzing, everything it stored is read back: each list, then each record in it, per schema.
_LISTS: Final = {
    "secrets": "secrets",
    "frontend-vars": "frontend_vars",
    "credentials": "credentials",
    "workflows": "workflows",
    "executions": "executions",
}


def read_back(target: Target) -> OpResult:
    """GET every list of the fuzzed project (every page) and every record listed, validating each answer."""
    session = _session(target)
    result = OpResult("read back")
    started = time.monotonic()
    for store, key in _LISTS.items():
        list_label = f"GET /api/projects/{{project}}/{store}"
        item_label = list_label + ("/{id}" if store == "executions" else "/{name}")
        before: str | None = None
        while True:
            query = {"limit": 200, **({"before": before} if before else {})} if store == "executions" else {}
            page = _read(session, result, list_label, {"project": target.project}, query)
            if page is None:
                break
            for item in page[key]:
                field_name = "id" if store == "executions" else "name"
                _read(session, result, item_label, {"project": target.project, field_name: item[field_name]}, {})
            before = page.get("next_before")
            if not before:
                break
    result.seconds = time.monotonic() - started
    return result


def _read(
    session: _Session, result: OpResult, label: str, path: dict[str, str], query: dict[str, Any]
) -> dict[str, Any] | None:
    operation = session.operations[GenerationMode.POSITIVE][label]
    case = operation.Case(path_parameters=path, query=query or None)
    headers = _bearer(session.target.dashboard)
    response = case.call(base_url=session.target.url, session=session.http, headers=headers, timeout=REQUEST_TIMEOUT_S)
    result.requests += 1
    result.statuses[response.status_code] += 1
    try:
        case.validate_response(response, checks=CHECKS, headers=headers)
    except (FailureGroup, Failure) as exc:
        result.fail(f"{label} {response.status_code}", str(exc))
    if response.status_code != 200:
        result.fail(f"{label} {response.status_code}", f"{label} {path}: {response.status_code} {response.text[:300]}")
        return None
    return dict(response.json())
