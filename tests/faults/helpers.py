"""What the fault tests share: the service and workers as processes on a private redis-server, an
API client that times every answer, and readers for the events stream and the SQLite file as they
are on disk (not as the service says they are).

Values written here are made up by the tests; assertion messages name secrets, never print values.
"""

import asyncio
import json
import secrets as random
import sqlite3
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import redis.asyncio as redis
from cryptography.fernet import Fernet

from contract.events import decode_event
from contract.executions import EXECUTIONS_GROUP
from contract.streams import FIELD_EVENT, FIELD_ORIGIN, FIELD_SEQ, Streams
from tests.support.processes import Process, RedisServer, ServiceProcess, clean_environ, service_process
from tests.support.processes import worker_process as _worker_process


@dataclass(frozen=True)
class Answer:
    """One HTTP answer as a client saw it; `status` 0 when the connection failed."""

    status: int
    body: Any
    content_type: str
    elapsed_s: float
    failure: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def error_code(self) -> str | None:
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            return str(self.body["error"].get("code"))
        return None


@dataclass(frozen=True)
class Project:
    id: str
    dashboard_token: str
    engine_token: str

    @property
    def dashboard(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.dashboard_token}"}

    @property
    def engine(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.engine_token}"}


@dataclass
class Api:
    session: aiohttp.ClientSession
    url: str

    async def call(
        self, method: str, path: str, *, headers: dict[str, str] | None = None, timeout_s: float = 30.0, **kwargs: Any
    ) -> Answer:
        started = time.monotonic()
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        try:
            async with self.session.request(
                method, self.url + path, headers=headers, timeout=timeout, **kwargs
            ) as response:
                raw = await response.read()
                content_type = response.content_type
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Answer(0, None, "", time.monotonic() - started, failure=type(exc).__name__)
        body: Any = raw.decode(errors="replace")
        if content_type == "application/json" and raw:
            body = json.loads(raw)
        return Answer(status, body, content_type, time.monotonic() - started)

    async def put_secret(self, project: Project, name: str, value: str, **kwargs: Any) -> Answer:
        path = f"/api/projects/{project.id}/secrets/{name}"
        return await self.call("PUT", path, json={"value": value}, headers=project.dashboard, **kwargs)

    async def secret_meta(self, project: Project, name: str) -> Answer:
        return await self.call("GET", f"/api/projects/{project.id}/secrets/{name}", headers=project.dashboard)

    async def put_workflow(self, project: Project, name: str, definition: dict[str, Any]) -> Answer:
        path = f"/api/projects/{project.id}/workflows/{name}"
        return await self.call("PUT", path, json=definition, headers=project.dashboard)

    async def hook(self, project: Project, workflow: str, body: Any = None, timeout_s: float = 60.0) -> Answer:
        return await self.call("POST", f"/hooks/{project.id}/{workflow}", json=body or {}, timeout_s=timeout_s)

    async def executions(self, project: Project) -> list[dict[str, Any]]:
        answer = await self.call("GET", f"/api/projects/{project.id}/executions?limit=100", headers=project.dashboard)
        assert answer.status == 200, answer
        return list(answer.body["executions"])

    async def execution(self, project: Project, execution_id: str) -> dict[str, Any]:
        path = f"/api/projects/{project.id}/executions/{execution_id}"
        answer = await self.call("GET", path, headers=project.dashboard)
        assert answer.status == 200, answer
        return dict(answer.body)


@dataclass
class FaultStack:
    """A private redis-server, one service process and any number of worker processes, in `folder`."""

    folder: Path
    redis: RedisServer
    session: aiohttp.ClientSession
    prefix: str = field(default_factory=lambda: f"faults-{random.token_hex(5)}")
    admin_token: str = field(default_factory=lambda: "faults-admin-" + random.token_hex(12))
    master_key: str = field(default_factory=lambda: Fernet.generate_key().decode())
    service: ServiceProcess | None = None
    workers: list[Process] = field(default_factory=list)
    helpers: list[Process] = field(default_factory=list)

    @property
    def db_path(self) -> Path:
        return self.folder / "backend-secrets.db"

    @property
    def streams(self) -> Streams:
        return Streams(self.prefix)

    @property
    def api(self) -> Api:
        assert self.service is not None, "start_service() first"
        return Api(self.session, self.service.url)

    async def start_service(self, **extra_env: str) -> ServiceProcess:
        self.service = service_process(
            self.folder,
            redis_url=self.redis.url,
            prefix=self.prefix,
            master_key=self.master_key,
            admin_token=self.admin_token,
            **extra_env,
        )
        self.service.process.start()
        await self.service.wait_healthy()
        return self.service

    async def restart_service(self) -> None:
        """The same process settings, database and port: what a supervisor does after a crash."""
        assert self.service is not None
        self.service.process.start()
        await self.service.wait_healthy()

    async def start_worker(self, name: str, **extra_env: str) -> Process:
        assert self.service is not None
        folder = self.folder / name
        folder.mkdir(exist_ok=True)
        env = {"BACKEND_SECRETS_WORKER_METRICS_PORT": "0", **extra_env}
        worker = _worker_process(folder, redis_url=self.redis.url, prefix=self.prefix, api_url=self.service.url, **env)
        worker.name = name
        self.workers.append(worker)
        worker.start()
        await worker.wait_for_log("following")
        return worker

    def start_python(self, name: str, code: str) -> Process:
        """A helper process running `code` (as `python -c`), logging to `<name>.log`."""
        process = Process(name, [sys.executable, "-c", code], clean_environ(), self.folder / f"{name}.log")
        self.helpers.append(process)
        process.start()
        return process

    async def create_project(self, name: str = "Shop") -> Project:
        admin = {"Authorization": f"Bearer {self.admin_token}"}
        answer = await self.api.call("POST", "/api/projects", json={"name": name}, headers=admin)
        assert answer.status == 201, answer
        return Project(answer.body["id"], answer.body["dashboard_token"], answer.body["engine_token"])

    def stop_all(self) -> None:
        for process in [*self.helpers, *self.workers]:
            process.stop()
        if self.service is not None:
            self.service.process.stop()


@dataclass(frozen=True)
class StreamEntry:
    entry_id: bytes
    seq: int
    origin: bytes
    payload: bytes

    @property
    def event(self) -> dict[str, Any]:
        return dict(msgspec.to_builtins(decode_event(self.payload)))


async def stream_entries(redis_url: str, stream: str) -> list[StreamEntry]:
    client = redis.Redis.from_url(redis_url, socket_connect_timeout=1)
    try:
        entries = await client.xrange(stream)
    finally:
        await client.aclose()
    return [
        StreamEntry(entry_id, int(fields[FIELD_SEQ]), fields.get(FIELD_ORIGIN, b""), fields[FIELD_EVENT])
        for entry_id, fields in entries
    ]


async def wait_for_seq(redis_url: str, stream: str, seq: int, timeout_s: float = 20.0) -> list[StreamEntry]:
    """The stream's entries once one carries `seq` (or whatever is there when the time is up)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            entries = await stream_entries(redis_url, stream)
        except (redis.ConnectionError, OSError):
            entries = []
        if any(entry.seq >= seq for entry in entries) or time.monotonic() > deadline:
            return entries
        await asyncio.sleep(0.05)


async def pending_executions(redis_url: str, stream: str) -> int:
    """Messages of the executions group read by a worker and not acked yet."""
    client = redis.Redis.from_url(redis_url, socket_connect_timeout=1)
    try:
        summary = await client.xpending(stream, EXECUTIONS_GROUP)
    finally:
        await client.aclose()
    return int(summary["pending"])


async def wait_until_acked(redis_url: str, stream: str, timeout_s: float = 5.0) -> int:
    """Pending executions once none is left (a worker acks just after the caller is answered)."""
    deadline = time.monotonic() + timeout_s
    while (pending := await pending_executions(redis_url, stream)) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    return pending


def sqlite_query(db_path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Read the database file directly, as another process would, without writing to it."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
    try:
        return list(conn.execute(sql, params).fetchall())
    finally:
        conn.close()


def last_committed_seq(db_path: Path) -> int:
    rows = sqlite_query(db_path, "SELECT seq FROM sqlite_sequence WHERE name = 'outbox'")
    return int(rows[0][0]) if rows else 0


def make_value(label: str) -> str:
    """A made-up value that is unique across the run."""
    return f"{label}-{random.token_urlsafe(12)}"
