"""schemathesis against the live `/api/openapi.json`: every operation, real tokens, no 5xx, every answer per schema.

One `python -m service` on a free loopback port (the shared Redis, this module's own stream prefix,
no worker: the routes that wait for a workflow answer their documented 504 after
BACKEND_SECRETS_HOOK_TIMEOUT_S). The fixture seeds a project with a record in every store, then the
operations are fuzzed in a pool of processes (generating cases is the costly part) and each
operation's test below reads its own result: how many requests, which statuses, which failures.

Every operation of the live document must have a plan in PLANS: at least 1,000 requests, or a
written reason for fewer (an operation without parameters has no input for a generator to vary).
"""

import concurrent.futures
import dataclasses
import math
import multiprocessing
import os
import secrets as random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest
import redis
import requests
from cryptography.fernet import Fernet
from openapi_spec_validator import validate

from contract.config import Secret
from service.app import create_app
from service.openapi import build_document
from service.settings import Settings
from tests.fuzz.runner import GRANT_FRESH_S, OpResult, Plan, Target, fuzz_operation, read_back
from tests.support.processes import ServiceProcess, service_process

pytestmark = pytest.mark.timeout(600)

# FUZZ_SCALE=0.1 for a quick look: every count and floor is scaled (the suite runs at 1).
SCALE: Final = float(os.environ.get("FUZZ_SCALE", "1"))
POOL_PROCESSES: Final = 3  # on 2 cores: cases are generated in the pool while the service answers
DASHBOARD: Final = ("dashboard",)
NO_INPUT: Final = "no parameters, body or token: one request is all a generator can make of it"

PLANS: Final[dict[str, Plan]] = {
    # projects (admin; key rotation: the admin or the project's own dashboard token)
    "POST /api/projects": Plan(600, 400, ("admin",)),
    "POST /api/projects/{project}/rotate-key": Plan(600, 400, ("rotate_admin", "rotate_dashboard"), project="rotate"),
    "DELETE /api/projects/{project}": Plan(600, 400, ("admin",), project="victims"),
    # the three stores (write and delete on scratch names, so the seeded records stay for the reads)
    "GET /api/projects/{project}/secrets": Plan(600, 400, DASHBOARD),
    "GET /api/projects/{project}/secrets/{name}": Plan(600, 400, DASHBOARD, names="secrets"),
    "PUT /api/projects/{project}/secrets/{name}": Plan(600, 400, DASHBOARD, names="scratch"),
    "DELETE /api/projects/{project}/secrets/{name}": Plan(600, 400, DASHBOARD, names="scratch"),
    "GET /api/engine/{project}/secrets": Plan(600, 400, ("engine", "engine", "grant")),
    "GET /api/projects/{project}/frontend-vars": Plan(600, 400, DASHBOARD),
    "GET /api/projects/{project}/frontend-vars.env": Plan(600, 400, DASHBOARD),
    "GET /api/projects/{project}/frontend-vars/{name}": Plan(600, 400, DASHBOARD, names="frontend_vars"),
    "PUT /api/projects/{project}/frontend-vars/{name}": Plan(600, 400, DASHBOARD, names="scratch"),
    "DELETE /api/projects/{project}/frontend-vars/{name}": Plan(600, 400, DASHBOARD, names="scratch"),
    "GET /api/projects/{project}/credentials": Plan(600, 400, DASHBOARD),
    "GET /api/projects/{project}/credentials/{name}": Plan(600, 400, DASHBOARD, names="credentials"),
    "PUT /api/projects/{project}/credentials/{name}": Plan(
        600, 400, DASHBOARD, names="scratch", valid_body="credential"
    ),
    "DELETE /api/projects/{project}/credentials/{name}": Plan(600, 400, DASHBOARD, names="scratch"),
    # workflows and executions
    "GET /api/projects/{project}/workflows": Plan(600, 400, DASHBOARD),
    "GET /api/projects/{project}/workflows/{name}": Plan(600, 400, DASHBOARD, names="workflows"),
    "PUT /api/projects/{project}/workflows/{name}": Plan(
        600, 400, DASHBOARD, names="scratch_workflows", valid_body="workflow"
    ),
    "DELETE /api/projects/{project}/workflows/{name}": Plan(600, 400, DASHBOARD, names="scratch_workflows"),
    "GET /api/projects/{project}/executions": Plan(600, 400, DASHBOARD),
    "GET /api/projects/{project}/executions/{id}": Plan(600, 400, DASHBOARD, names="executions"),
    "POST /api/projects/{project}/workflows/{name}/executions": Plan(
        600, 400, DASHBOARD, names="workflows", waits=True
    ),
    "POST /hooks/{project}/{workflow}": Plan(600, 400, ("none",), names="workflows", waits=True),
    "POST /api/engine/{project}/executions/{id}/claim": Plan(600, 400, ("grant",)),
    "POST /api/engine/{project}/executions/{id}/result": Plan(600, 400, ("grant",)),
    "GET /api/projects/{project}/audit": Plan(600, 400, ("admin", "dashboard")),
    # the dashboard page's session and files
    "POST /api/session": Plan(600, 400, ("none",)),
    # its one input is the cookie: the negative cases vary it (a garbage cookie must get a 401)
    "GET /api/session": Plan(5, 1000, ("cookie",)),
    "DELETE /api/session": Plan(
        5,
        0,
        ("none", "cookie"),
        floor=1,
        reason=NO_INPUT + "; the cookie is optional, so no case of it is invalid",
    ),
    "GET /static/{file}": Plan(1000, 0, ("none",), names="static"),
    # public, without input
    "GET /healthz": Plan(5, 0, ("none",), floor=1, reason=NO_INPUT),
    "GET /readyz": Plan(5, 0, ("none",), floor=1, reason=NO_INPUT),
    "GET /metrics": Plan(5, 0, ("none",), floor=1, reason=NO_INPUT),
    "GET /api/credential-types": Plan(5, 0, ("none",), floor=1, reason=NO_INPUT),
    "GET /variables": Plan(5, 0, ("none",), floor=1, reason=NO_INPUT),
    "GET /credentials": Plan(5, 0, ("none",), floor=1, reason=NO_INPUT),
    "GET /api/openapi.json": Plan(
        0,
        0,
        ("none",),
        floor=0,
        reason="schemathesis leaves out the operation that serves the schema it tests; "
        "test_the_served_document_is_valid_openapi checks it",
    ),
}


def _admin(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _ok(response: requests.Response, *statuses: int) -> dict[str, object]:
    assert response.status_code in statuses, (response.status_code, response.text)
    return dict(response.json()) if response.content else {}


def _create_project(http: requests.Session, url: str, admin: str, name: str) -> dict[str, object]:
    return _ok(http.post(f"{url}/api/projects", json={"name": name}, headers=_admin(admin)), 201)


def _seed(service: ServiceProcess, redis_url: str, prefix: str) -> Target:
    """A project with a record in every store, a project to rotate, projects to delete, a session."""
    url, admin = service.url, service.admin_token
    http = requests.Session()
    main = _create_project(http, url, admin, "Fuzz")
    project, dashboard = str(main["id"]), _admin(str(main["dashboard_token"]))
    base = f"{url}/api/projects/{project}"
    for name in ("FUZZ_SECRET", "OTHER_SECRET"):
        _ok(http.put(f"{base}/secrets/{name}", json={"value": random.token_hex(12)}, headers=dashboard), 201)
    for name in ("PUBLIC_URL", "PUBLIC_FLAG"):
        _ok(http.put(f"{base}/frontend-vars/{name}", json={"value": "https://example.test"}, headers=dashboard), 201)
    credential = {"type": "http_bearer", "fields": {"token": "tok_" + random.token_hex(12)}}
    _ok(http.put(f"{base}/credentials/FUZZ_API", json=credential, headers=dashboard), 201)
    respond = [{"id": "reply", "type": "respond", "config": {"status": 200, "body": {"ok": True}}}]
    _ok(http.put(f"{base}/workflows/fuzz-hook", json={"nodes": respond}, headers=dashboard), 201)
    manual = {"trigger": {"type": "manual"}, "nodes": respond}
    _ok(http.put(f"{base}/workflows/fuzz-manual", json=manual, headers=dashboard), 201)
    queued = [http.post(f"{base}/workflows/fuzz-manual/executions?wait=false", headers=dashboard) for _ in range(3)]
    executions = tuple(str(_ok(response, 202)["id"]) for response in queued)
    rotate = _create_project(http, url, admin, "Rotate")
    kept = f"{url}/api/projects/{rotate['id']}/secrets/KEPT"
    _ok(http.put(kept, json={"value": random.token_hex(12)}, headers=_admin(str(rotate["dashboard_token"]))), 201)
    victims = tuple(str(_create_project(http, url, admin, f"Victim {i}")["id"]) for i in range(10))
    signed_in = http.post(f"{url}/api/session", json={"token": main["dashboard_token"]})
    _ok(signed_in, 200)
    return Target(
        url=url,
        redis_url=redis_url,
        prefix=prefix,
        admin=admin,
        project=project,
        dashboard=str(main["dashboard_token"]),
        engine=str(main["engine_token"]),
        rotate_project=str(rotate["id"]),
        rotate_dashboard=str(rotate["dashboard_token"]),
        victims=victims,
        session_cookie=signed_in.cookies["bs_session"],
        grant_workflow="fuzz-manual",
        names={
            "secrets": ("FUZZ_SECRET", "OTHER_SECRET"),
            "frontend_vars": ("PUBLIC_URL", "PUBLIC_FLAG"),
            "credentials": ("FUZZ_API",),
            "scratch": ("SCRATCH_A", "SCRATCH_B"),
            "workflows": ("fuzz-hook", "fuzz-manual"),
            "scratch_workflows": ("scratch-a", "scratch-b"),
            "executions": executions,
            "static": ("variables.js", "variables.css", "favicon.svg", "credentials.html"),
        },
    )


def _wait_healthy(service: ServiceProcess, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if requests.get(f"{service.url}/healthz", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        assert service.process.running, service.process.tail()
        assert time.monotonic() < deadline, service.process.tail()
        time.sleep(0.05)


@dataclasses.dataclass
class FuzzRun:
    results: dict[str, OpResult]
    read_back: OpResult
    seconds: float
    service_log: str
    target: Target


def _run_pool(target: Target) -> dict[str, OpResult]:
    context = multiprocessing.get_context("spawn")
    # The longest first (those that wait out workflow time-outs), so no process is left alone at the end.
    order = sorted(filter(_fuzzed, PLANS), key=lambda label: -PLANS[label].cost)
    with concurrent.futures.ProcessPoolExecutor(POOL_PROCESSES, mp_context=context) as pool:
        futures = {label: pool.submit(fuzz_operation, target, label, _scaled(PLANS[label])) for label in order}
        return {label: future.result() for label, future in futures.items()}


def _scaled(plan: Plan) -> Plan:
    return dataclasses.replace(
        plan, positive=math.ceil(plan.positive * SCALE), negative=math.ceil(plan.negative * SCALE)
    )


def _fuzzed(label: str) -> bool:
    return PLANS[label].positive + PLANS[label].negative > 0


@pytest.fixture(scope="module")
def fuzz_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzRun]:
    redis_url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = f"test-fuzz-{random.token_hex(6)}"
    folder: Path = tmp_path_factory.mktemp("fuzz")
    service = service_process(
        folder,
        redis_url=redis_url,
        prefix=prefix,
        master_key=Fernet.generate_key().decode(),
        admin_token="fuzz-admin-" + random.token_hex(12),
        BACKEND_SECRETS_HOOK_TIMEOUT_S=str(GRANT_FRESH_S),
    )
    service.process.start()
    try:
        _wait_healthy(service)
        target = _seed(service, redis_url, prefix)
        started = time.monotonic()
        results = _run_pool(target)
        seconds = time.monotonic() - started
        stored = read_back(target)
        assert service.process.running, service.process.tail()
        yield FuzzRun(results, stored, seconds, service.process.log_text(), target)
    finally:
        service.process.stop()
        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(match=f"{prefix}:*"))
        if keys:
            client.delete(*keys)
        client.close()


def test_every_operation_has_a_plan() -> None:
    document = build_document(create_app(Settings(master_keys=(Secret(Fernet.generate_key().decode()),))).router)
    live = {f"{method.upper()} {path}" for path, methods in document["paths"].items() for method in methods}
    assert live == set(PLANS), f"without a plan: {sorted(live - set(PLANS))}; stale: {sorted(set(PLANS) - live)}"
    for label, plan in PLANS.items():
        assert plan.floor >= 1000 or plan.reason, f"{label}: fewer than 1,000 requests needs a reason"


def test_the_served_document_is_valid_openapi(fuzz_run: FuzzRun) -> None:
    response = requests.get(f"{fuzz_run.target.url}/api/openapi.json", timeout=10)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("application/json")
    validate(response.json())


@pytest.mark.parametrize("label", [label for label in PLANS if _fuzzed(label)])
def test_operation(fuzz_run: FuzzRun, label: str) -> None:
    result = fuzz_run.results[label]
    print(f"{label}: {result.requests} requests in {result.seconds:.1f}s, {dict(result.by_mode)}")
    print(f"  statuses {dict(result.statuses)}; of the positive cases {dict(result.positive_statuses)}")
    print(f"  positive cases refused: {dict(result.positive_refusals.most_common(6))}")
    reports = "\n\n".join(f"[{key}]\n{report}" for key, report in result.failures.items())
    assert not result.failures, f"{result.failure_count} failing requests of {result.requests}:\n{reports}"
    assert result.requests >= PLANS[label].floor * SCALE, f"{label}: only {result.requests} requests"
    assert not any(status >= 500 and status != 504 for status in result.statuses), result.statuses


def test_what_the_fuzzing_stored_reads_back_per_schema(fuzz_run: FuzzRun) -> None:
    """Every list of the project, every page, every record in it: the records the fuzzer wrote included."""
    result = fuzz_run.read_back
    print(f"read back: {result.requests} requests, {dict(result.statuses)}")
    assert not result.failures, "\n\n".join(result.failures.values())
    assert result.requests > 100


def test_totals_and_the_service_log(fuzz_run: FuzzRun) -> None:
    total = sum(result.requests for result in fuzz_run.results.values())
    print(f"fuzzing: {total} requests over {len(fuzz_run.results)} operations in {fuzz_run.seconds:.0f}s")
    assert total >= 1000 * SCALE * sum(1 for plan in PLANS.values() if plan.floor >= 1000)
    # A 4xx can hide an internal failure (a write that raised is refused, not a 500): the log tells.
    errors = [line for line in fuzz_run.service_log.splitlines() if '"level": "ERROR"' in line or "Traceback" in line]
    assert not errors, "\n".join(errors[:5])
