"""A 60-second mixed load: 200 concurrent clients reading, writing and running webhook executions.

One service process, two worker processes (`python -m worker`), Redis, and this driver: 200
client coroutines on one event loop, sharing one keep-alive aiohttp session (a connection each).
Every client loops until the end: it picks a kind of request at random with these weights and
a project out of 4 (100 secrets of 64 bytes each, and the Stripe webhook workflow of
bench.webhooks), sends it, reads the whole answer and goes on at once (a closed loop):

- 30% list secrets (`GET /api/projects/{p}/secrets`, dashboard token),
- 30% the engine endpoint (`GET /api/engine/{p}/secrets`, engine token),
- 30% writes (`PUT /api/projects/{p}/secrets/{name}`, 64-byte value, one of the project's 100),
- 10% webhook executions (`POST /hooks/{p}/stripe`: verify_webhook + respond, run by a worker).

Clients start over the first second; requests that start in the first WARMUP_S seconds are not
timed, but their errors count. An error is any answer but the kind's 2xx, or no answer (a
connection error or the 40 s request timeout). Everything is bounded: the load stops starting
requests at its deadline and the whole run has a timeout.

The raw limit is the same 200 clients with the same mix, the same headers and bodies, against a
bare aiohttp handler in a process of its own answering static JSON bodies of the sizes the
service answers (bench.engine_endpoint's floor server), in the same run: what the driver,
loopback HTTP and the machine allow at this concurrency. The driver shares the 2 CPUs with the
service, the workers and Redis; its CPU use and its event-loop lag are reported.
"""

import argparse
import asyncio
import json
import os
import random
import re
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench.engine_endpoint import fill, floor_server
from bench.harness import (
    REDIS_URL,
    REPO,
    Figure,
    Project,
    Service,
    bench_value,
    cpu_times,
    create_project,
    print_figures,
    process_cpu_s,
    redis_cpu_s,
    running_service,
    stop_process,
    summary,
    write_result,
)
from bench.webhooks import BODY, SIGNING_KEY, WORKFLOW, signature

CLIENTS = 200
DURATION_S = 60.0
WARMUP_S = 5.0
RAMP_S = 1.0
FLOOR_S = 10.0  # each of the two raw phases: as many requests as possible, then paced at the service's rate
PROJECTS = 4
SECRETS = 100
WORKERS = 2
MIX = {"list": 30, "engine": 30, "put": 30, "webhook": 10}
OK = {"list": (200,), "engine": (200,), "put": (200, 201), "webhook": (200,)}
IDLE_REQUESTS = 40  # per kind, one client, before the load
REQUEST_TIMEOUT_S = 40.0  # above the service's 30 s hook timeout
SEED = 6

ID_LIKE = re.compile(r"\b(?=[\w-]*\d)[\w-]{12,}\b")  # execution, request and project ids, hex: grouped as one
KINDS = tuple(MIX)
WEIGHTS = tuple(MIX.values())


@dataclass(frozen=True)
class Request:
    method: str
    url: str
    headers: dict[str, str]
    data: bytes | None = None


Target = Callable[[str, int, random.Random], Request]


@dataclass
class Record:
    """What the clients saw: latencies of timed requests, and every answer's status (or exception)."""

    latencies_ms: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in KINDS})
    statuses: dict[str, dict[str, int]] = field(default_factory=lambda: {k: {} for k in KINDS})
    error_codes: dict[str, int] = field(default_factory=dict)  # "kind status code" -> count
    errors_in_warmup: int = 0
    sent: int = 0
    timed: int = 0

    def add(self, kind: str, outcome: str, ok: bool, timed: bool, ms: float, code: str = "") -> None:
        self.sent += 1
        counts = self.statuses[kind]
        counts[outcome] = counts.get(outcome, 0) + 1
        if not ok:
            key = f"{kind} {outcome} {code}".strip()
            self.error_codes[key] = self.error_codes.get(key, 0) + 1
        if timed:
            self.timed += 1
            self.latencies_ms[kind].append(ms)
        elif not ok:
            self.errors_in_warmup += 1

    def errors(self) -> dict[str, dict[str, int]]:
        return {
            kind: {outcome: n for outcome, n in counts.items() if not outcome.isdigit() or int(outcome) not in OK[kind]}
            for kind, counts in self.statuses.items()
        }

    def error_count(self) -> int:
        return sum(n for counts in self.errors().values() for n in counts.values())


# --- what a request is, against the service or the floor ------------------------------------------


def json_body(value: str) -> bytes:
    return json.dumps({"value": value}).encode()


class Values:
    """A fresh synthetic value per write (it carries a counter; never printed)."""

    def __init__(self) -> None:
        self.next = 0

    def take(self) -> str:
        self.next += 1
        return bench_value(self.next)


def service_target(service: Service, projects: list[Project], values: Values) -> Target:
    def target(kind: str, index: int, rng: random.Random) -> Request:
        project = projects[index]
        api = f"{service.base_url}/api/projects/{project.id}"
        if kind == "list":
            return Request("GET", f"{api}/secrets", project.dashboard)
        if kind == "engine":
            url = f"{service.base_url}/api/engine/{project.id}/secrets"
            return Request("GET", url, {"Authorization": f"Bearer {project.engine_token}"})
        if kind == "put":
            headers = {**project.dashboard, "Content-Type": "application/json"}
            name = f"BENCH_{rng.randrange(SECRETS):04d}"
            return Request("PUT", f"{api}/secrets/{name}", headers, json_body(values.take()))
        headers = {"Content-Type": "application/json", "Stripe-Signature": signature()}
        return Request("POST", f"{service.base_url}/hooks/{project.id}/stripe", headers, BODY)

    return target


def floor_target(floor_base: str, sizes: dict[str, int], service: Target) -> Target:
    """The service's request (same method, headers, body), sent to a static body of the service's answer size."""

    def target(kind: str, index: int, rng: random.Random) -> Request:
        request = service(kind, index, rng)
        return Request(request.method, f"{floor_base}/static/{sizes[kind]}", request.headers, request.data)

    return target


async def send(session: aiohttp.ClientSession, request: Request) -> tuple[str, int, str]:
    """(status or exception name, body bytes, the error code of a 4xx/5xx answer's body)."""
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    try:
        async with session.request(
            request.method, request.url, headers=request.headers, data=request.data, timeout=timeout
        ) as response:
            body = await response.read()
            return str(response.status), len(body), error_code(body) if response.status >= 400 else ""
    except (aiohttp.ClientError, TimeoutError) as exc:
        return type(exc).__name__, 0, ""


def error_code(body: bytes) -> str:
    """The code and message (ids folded) of the service's error body: they name a failure, never a value."""
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        return "(no JSON error body)"
    if not isinstance(error, dict):
        return "(no error code)"
    message = ID_LIKE.sub("<id>", re.sub(r"bench-\d{10}-x+", "***", str(error.get("message", ""))))
    return f"{error.get('code', '?')}: {message[:160]}"


# --- the load -------------------------------------------------------------------------------------


@dataclass
class Window:
    per_s: float
    seconds: float
    cpu_percent_of_one_core: dict[str, float]
    machine_busy: float
    loop_lag_ms: dict[str, float]


async def loop_lag(stop_at: float, into: list[float], interval_s: float = 0.05) -> None:
    """How late this driver's event loop wakes up: the share of a latency that is the driver's own."""
    while time.perf_counter() < stop_at:
        started = time.perf_counter()
        await asyncio.sleep(interval_s)
        into.append((time.perf_counter() - started - interval_s) * 1000)


async def drive(
    session: aiohttp.ClientSession, target: Target, warmup_s: float, window_s: float, pids: dict[str, list[int]]
) -> tuple[Record, Window]:
    record = Record()
    begin = time.perf_counter()
    measure_from, stop_at = begin + warmup_s, begin + warmup_s + window_s

    async def client(number: int) -> None:
        rng = random.Random(SEED * 1000 + number)
        await asyncio.sleep(RAMP_S * number / CLIENTS)
        while (started := time.perf_counter()) < stop_at:
            kind = rng.choices(KINDS, WEIGHTS)[0]
            outcome, _, code = await send(session, target(kind, rng.randrange(PROJECTS), rng))
            ms = (time.perf_counter() - started) * 1000
            ok = outcome.isdigit() and int(outcome) in OK[kind]
            record.add(kind, outcome, ok, started >= measure_from, ms, code)

    lags: list[float] = []
    async with asyncio.timeout(warmup_s + window_s + REQUEST_TIMEOUT_S + 30.0):
        tasks = [asyncio.create_task(client(n)) for n in range(CLIENTS)]
        await asyncio.sleep(warmup_s)
        lag_task = asyncio.create_task(loop_lag(stop_at, lags))
        cpu0 = cpu_usage(pids)
        window0 = time.perf_counter()
        await asyncio.sleep(max(0.0, stop_at - time.perf_counter()))
        cpu1, seconds = cpu_usage(pids), time.perf_counter() - window0
        await asyncio.gather(*tasks, lag_task)
    usage = {name: round(100 * (cpu1[name] - cpu0[name]) / seconds, 1) for name in cpu0 if name != "machine_total"}
    busy = (cpu1["machine"] - cpu0["machine"]) / max(1e-9, cpu1["machine_total"] - cpu0["machine_total"])
    usage.pop("machine")
    window = Window(record.timed / window_s, seconds, usage, round(busy, 3), summary(lags) if lags else {})
    return record, window


def cpu_usage(pids: dict[str, list[int]]) -> dict[str, float]:
    usage = {name: sum(process_cpu_s(pid) for pid in group) for name, group in pids.items()}
    usage["driver"] = time.process_time()
    usage["redis"] = redis_cpu_s()
    usage["machine"], usage["machine_total"] = cpu_times()
    return usage


async def paced(
    session: aiohttp.ClientSession, target: Target, per_kind_s: dict[str, float], warmup_s: float, window_s: float
) -> tuple[Record, float]:
    """An open loop at the given rate of each kind (at most CLIENTS in flight): latency from the scheduled start,
    so a slow answer delays the clock of nothing else. Returns the record and the rate achieved."""
    record = Record()
    rng = random.Random(SEED)
    kinds, weights = list(per_kind_s), list(per_kind_s.values())
    interval = 1.0 / max(1e-9, sum(weights))
    slots = asyncio.Semaphore(CLIENTS)
    tasks: set[asyncio.Task[None]] = set()
    begin = time.perf_counter()
    measure_from, stop_at = begin + warmup_s, begin + warmup_s + window_s

    async def one(kind: str, request: Request, scheduled: float) -> None:
        async with slots:
            outcome, _, code = await send(session, request)
        ok = outcome.isdigit() and int(outcome) in OK[kind]
        record.add(kind, outcome, ok, scheduled >= measure_from, (time.perf_counter() - scheduled) * 1000, code)

    async with asyncio.timeout(warmup_s + window_s + REQUEST_TIMEOUT_S + 30.0):
        next_at = begin
        while next_at < stop_at:
            if (delay := next_at - time.perf_counter()) > 0:
                await asyncio.sleep(delay)
            kind = rng.choices(kinds, weights)[0]
            task = asyncio.create_task(one(kind, target(kind, rng.randrange(PROJECTS), rng), next_at))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            next_at += interval
        await asyncio.gather(*tasks)
    return record, record.timed / window_s


def log_problems(paths: list[Path], hide: list[str], samples: int = 15) -> dict[str, object]:
    """Warnings and errors the service and the workers logged, counted by level, logger, message and exception
    type (ids folded), and the first traceback. Logs never hold a value; bench values are masked all the same."""
    counts: dict[str, int] = {}
    first_exception = ""

    def masked(text: str) -> str:
        for secret in hide:
            text = text.replace(secret, "***")
        return re.sub(r"bench-\d{10}-x+", "***", text)

    for path in paths:
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                key = f"(plain) {path.stem}: {line[:200]}"
            else:
                if not isinstance(entry, dict) or entry.get("level") not in ("WARNING", "ERROR", "CRITICAL"):
                    continue
                exception = str(entry.get("exception", "")).strip()
                last = exception.splitlines()[-1][:200] if exception else ""
                key = f"{entry['level']} {entry.get('logger')}: {str(entry.get('message', ''))[:200]}"
                key += f" [{last}]" if last else ""
                if exception and not first_exception:
                    first_exception = masked(exception)[-3000:]
            key = ID_LIKE.sub("<id>", masked(key))
            counts[key] = counts.get(key, 0) + 1
    top = sorted(counts.items(), key=lambda item: -item[1])[:samples]
    return {"counts": dict(top), "distinct": len(counts), "first_exception": first_exception}


# --- setup ----------------------------------------------------------------------------------------


async def setup(session: aiohttp.ClientSession, service: Service) -> list[Project]:
    projects = []
    for number in range(PROJECTS):
        project = await create_project(session, service, f"Mixed {number}")
        await fill(session, service, project, SECRETS)
        api = f"{service.base_url}/api/projects/{project.id}"
        for url, body in ((f"{api}/secrets/STRIPE_WEBHOOK_SIGNING_KEY", {"value": SIGNING_KEY}),
                          (f"{api}/workflows/stripe", WORKFLOW)):  # fmt: skip
            async with session.put(url, json=body, headers=project.dashboard) as response:
                await response.read()
                if response.status not in (200, 201):
                    raise RuntimeError(f"setting up the project failed: {response.status}")
        projects.append(project)
    return projects


@asynccontextmanager
async def workers(service: Service, count: int) -> AsyncIterator[list[asyncio.subprocess.Process]]:
    env = {**os.environ, "REDIS_URL": REDIS_URL, "BACKEND_SECRETS_API_URL": service.base_url,
           "BACKEND_SECRETS_STREAM_PREFIX": service.prefix, "BACKEND_SECRETS_LOG_LEVEL": "WARNING",
           "BACKEND_SECRETS_WORKER_METRICS_PORT": "0"}  # fmt: skip
    log_path = service.db_dir / "workers.log"
    with log_path.open("wb") as log_file:
        procs = [
            await asyncio.create_subprocess_exec(sys.executable, "-m", "worker", cwd=REPO, env=env,
                                                 stdout=log_file, stderr=log_file)
            for _ in range(count)
        ]  # fmt: skip
    try:
        yield procs
    finally:
        for proc in procs:
            await stop_process(proc)


async def until_webhooks_run(session: aiohttp.ClientSession, target: Target, timeout_s: float = 20.0) -> None:
    """Both workers connected and in the consumer group: a webhook per project answers 200 (this also warms up)."""
    deadline = time.monotonic() + timeout_s
    rng = random.Random(SEED)
    for index in range(PROJECTS):
        while (await send(session, target("webhook", index, rng)))[0] != "200":
            if time.monotonic() > deadline:
                raise RuntimeError("webhook executions did not start running")
            await asyncio.sleep(0.2)


async def idle_latency(
    session: aiohttp.ClientSession, target: Target
) -> tuple[dict[str, dict[str, float]], dict[str, int]]:
    """One client, one request at a time: each kind unloaded (and the sizes of the answers, for the floor)."""
    rng = random.Random(SEED)
    latencies: dict[str, dict[str, float]] = {}
    sizes: dict[str, int] = {}
    for kind in KINDS:
        samples = []
        for number in range(IDLE_REQUESTS):
            started = time.perf_counter()
            outcome, size, _ = await send(session, target(kind, number % PROJECTS, rng))
            samples.append((time.perf_counter() - started) * 1000)
            if not outcome.isdigit() or int(outcome) not in OK[kind]:
                raise RuntimeError(f"{kind} answered {outcome} before the load")
            sizes[kind] = max(sizes.get(kind, 0), size)
        latencies[kind] = summary(samples)
    return latencies, sizes


# --- the run --------------------------------------------------------------------------------------


async def measure(duration_s: float, floor_s: float) -> tuple[list[Figure], dict[str, object]]:
    started = time.monotonic()
    connector = aiohttp.TCPConnector(limit=CLIENTS)
    async with (
        asyncio.timeout(duration_s + floor_s + 240.0),
        running_service("mixed-load", extra_env={"BACKEND_SECRETS_LOG_LEVEL": "WARNING"}) as service,
        aiohttp.ClientSession(connector=connector) as session,
    ):
        projects = await setup(session, service)
        target = service_target(service, projects, Values())
        async with workers(service, WORKERS) as procs:
            await until_webhooks_run(session, target)
            idle, sizes = await idle_latency(session, target)
            print(f"  mixed load: {CLIENTS} clients for {duration_s:.0f} s after {WARMUP_S:.0f} s warm-up", flush=True)
            pids = {"service": [service.pid], "workers": [p.pid for p in procs]}
            record, window = await drive(session, target, WARMUP_S, duration_s, pids)
            alive = [p.returncode is None for p in procs]
        problems = log_problems([service.db_dir / "service.log", service.db_dir / "workers.log"], [SIGNING_KEY])
        per_kind_s = {kind: len(v) / duration_s for kind, v in record.latencies_ms.items()}
        async with floor_server() as (floor_base, floor_pid):
            floor_session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CLIENTS))
            async with floor_session:
                floor = floor_target(floor_base, sizes, target)
                print(f"  raw: the same {CLIENTS} clients on the static handler for {floor_s:.0f} s", flush=True)
                floor_record, floor_window = await drive(floor_session, floor, 3.0, floor_s, {"floor": [floor_pid]})
                print(f"  raw: the static handler paced at the service's rate for {floor_s:.0f} s", flush=True)
                paced_record, paced_per_s = await paced(floor_session, floor, per_kind_s, 2.0, floor_s)
    figures: list[Figure] = []
    lat = {kind: summary(v) for kind, v in record.latencies_ms.items() if v}
    floor_lat = {kind: summary(v) for kind, v in paced_record.latencies_ms.items() if v}
    closed_floor_lat = {kind: summary(v) for kind, v in floor_record.latencies_ms.items() if v}
    names = {"list": "list secrets", "engine": "engine endpoint", "put": "PUT secret", "webhook": "webhook execution"}
    for kind in KINDS:
        for p in ("p50", "p99"):
            figures.append(
                Figure(f"mixed load {p}: {names[kind]} ({MIX[kind]}%)", lat[kind][p], "ms",
                       f"static handler at the same rate, {p}", floor_lat[kind][p], "(reported)", True)
            )  # fmt: skip
    errors = record.error_count()
    figures += [
        Figure(f"mixed load requests/s, {CLIENTS} clients", window.per_s, "requests/s",
               "static handler, same clients and mix", floor_window.per_s, "(reported)", True),
        Figure(f"mixed load errors (non-2xx or no answer), {duration_s + WARMUP_S:.0f} s", float(errors), "requests",
               "requests sent (ratio = error rate)", float(record.sent), "0 errors", errors == 0 and all(alive)),
    ]  # fmt: skip
    details: dict[str, object] = {
        "clients": CLIENTS,
        "duration_s": duration_s,
        "warmup_s": WARMUP_S,
        "floor_s": floor_s,
        "mix_percent": MIX,
        "projects": PROJECTS,
        "secrets_per_project": SECRETS,
        "workers": WORKERS,
        "workers_alive_after": alive,
        "latency_ms": lat,
        "floor_latency_ms": floor_lat,
        "floor_paced_per_s": round(paced_per_s, 1),
        "floor_paced_errors": paced_record.error_count(),
        "floor_closed_latency_ms": closed_floor_lat,
        "floor_closed_per_s": round(floor_window.per_s, 1),
        "idle_latency_ms": idle,
        "answer_bytes": sizes,
        "counts": {kind: len(v) for kind, v in record.latencies_ms.items()},
        "per_s": {kind: round(len(v) / duration_s, 1) for kind, v in record.latencies_ms.items()},
        "statuses": record.statuses,
        "errors": record.errors(),
        "error_codes": record.error_codes,
        "logged_problems": problems,
        "error_count": errors,
        "errors_in_warmup": record.errors_in_warmup,
        "sent": record.sent,
        "floor_statuses": floor_record.statuses,
        "floor_error_count": floor_record.error_count() + paced_record.error_count(),
        "cpu_percent_of_one_core": window.cpu_percent_of_one_core,
        "floor_cpu_percent_of_one_core": floor_window.cpu_percent_of_one_core,
        "machine_busy": window.machine_busy,
        "driver_loop_lag_ms": window.loop_lag_ms,
        "floor_driver_loop_lag_ms": floor_window.loop_lag_ms,
        "run_s": round(time.monotonic() - started, 1),
        "method": (
            f"{CLIENTS} client coroutines in one driver process (one keep-alive aiohttp session, a connection each), "
            f"closed loop for {duration_s:.0f} s after a {WARMUP_S:.0f} s warm-up (timed: requests started after it; "
            f"errors: all), mix {', '.join(f'{k} {v}%' for k, v in MIX.items())} over {PROJECTS} projects of "
            f"{SECRETS} secrets, webhook executions run by {WORKERS} worker processes. Raw: a bare aiohttp handler "
            "(own process) answering static bodies of the service's answer sizes to the same requests (method, "
            f"headers, bodies): for requests/s, the same {CLIENTS} closed-loop clients for {floor_s:.0f} s; for "
            f"latency, an open loop paced at the service's measured rate of each kind (at most {CLIENTS} in flight) "
            f"for {floor_s:.0f} s, timed from each request's scheduled start. The driver shares the 2 CPUs with the "
            "service, the workers and Redis"
        ),
    }
    return figures, details


def main() -> None:
    parser = argparse.ArgumentParser(description="60-second mixed load: reads, writes and webhook executions")
    parser.add_argument("--duration", type=float, default=DURATION_S)
    parser.add_argument("--floor", type=float, default=FLOOR_S)
    args = parser.parse_args()
    figures, details = asyncio.run(measure(args.duration, args.floor))
    write_result("mixed_load", figures, details)
    print_figures(f"Mixed load ({CLIENTS} clients, {args.duration:.0f} s)", figures)
    lat = details["latency_ms"]
    assert isinstance(lat, dict)
    for kind, stats in lat.items():
        print(f"  {kind:<8} n={stats['count']:>7,.0f} p50 {stats['p50']:8.1f} ms  p99 {stats['p99']:8.1f} ms")
    print(f"  errors: {details['error_count']} {details['errors']}")
    print(f"  CPU % of one core: {details['cpu_percent_of_one_core']}")


if __name__ == "__main__":
    main()
