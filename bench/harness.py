"""What every benchmark shares: a real service process, a project in it, statistics and results.

Each benchmark starts its own `python -m service` on a free loopback port with a fresh master
key, a temporary database folder and a unique stream prefix, and deletes its stream keys when
it is done. Results go to `bench/results/<name>.json` as `Figure` rows: the figure, the raw
limit measured in the same run, their ratio and the goal.
"""

import asyncio
import contextlib
import json
import math
import os
import platform
import secrets as random
import socket
import sqlite3
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as redis
from cryptography.fernet import Fernet

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
START_TIMEOUT_S = 20.0


# --- the service process -------------------------------------------------------------------------


@dataclass(frozen=True)
class Project:
    id: str
    dashboard_token: str
    engine_token: str

    def __repr__(self) -> str:  # tokens stay out of any log
        return f"Project(id={self.id!r})"

    @property
    def dashboard(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.dashboard_token}"}


@dataclass(frozen=True)
class Service:
    base_url: str
    admin_token: str
    prefix: str
    redis_url: str
    db_dir: Path
    pid: int

    def __repr__(self) -> str:
        return f"Service(base_url={self.base_url!r}, prefix={self.prefix!r}, pid={self.pid})"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unique_prefix(name: str) -> str:
    return f"bench-{name}-{random.token_hex(4)}"


async def delete_keys(redis_url: str, prefix: str) -> int:
    client = redis.Redis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await client.delete(*keys)
        return len(keys)
    finally:
        await client.aclose()


async def _wait_ready(base_url: str, proc: asyncio.subprocess.Process, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                break
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.get(f"{base_url}/readyz") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.05)
    raise RuntimeError(f"the service did not become ready in {START_TIMEOUT_S:.0f} s; its log ends:\n{_tail(log_path)}")


def _tail(path: Path, size: int = 2000) -> str:
    return path.read_text(errors="replace")[-size:] if path.exists() else ""


@contextlib.asynccontextmanager
async def running_service(name: str, *, extra_env: dict[str, str] | None = None) -> AsyncIterator[Service]:
    """`python -m service` on a free port, torn down (and its stream keys deleted) on exit."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
        db_dir = Path(tmp)
        port = free_port()
        prefix = unique_prefix(name)
        admin_token = "bench-admin-" + random.token_hex(16)
        env = {
            **os.environ,
            "BACKEND_SECRETS_MASTER_KEYS": Fernet.generate_key().decode(),
            "BACKEND_SECRETS_ADMIN_TOKEN": admin_token,
            "BACKEND_SECRETS_DB": str(db_dir / "backend-secrets.db"),
            "BACKEND_SECRETS_HOST": "127.0.0.1",
            "BACKEND_SECRETS_PORT": str(port),
            "BACKEND_SECRETS_STREAM_PREFIX": prefix,
            "REDIS_URL": REDIS_URL,
            **(extra_env or {}),
        }
        log_path = db_dir / "service.log"
        with log_path.open("wb") as log_file:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "service", cwd=REPO, env=env, stdout=log_file, stderr=log_file
            )
        base_url = f"http://127.0.0.1:{port}"
        try:
            await _wait_ready(base_url, proc, log_path)
            yield Service(base_url, admin_token, prefix, REDIS_URL, db_dir, proc.pid)
        finally:
            await stop_process(proc)
            await delete_keys(REDIS_URL, prefix)


async def stop_process(proc: asyncio.subprocess.Process, timeout_s: float = 5.0) -> None:
    if proc.returncode is not None:
        return
    proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()


async def create_project(session: aiohttp.ClientSession, service: Service, name: str = "Bench") -> Project:
    async with session.post(
        f"{service.base_url}/api/projects",
        json={"name": name},
        headers={"Authorization": f"Bearer {service.admin_token}"},
    ) as response:
        body = await response.json()
        if response.status != 201:
            raise RuntimeError(f"creating the bench project failed: {response.status} {body.get('error')}")
    return Project(body["id"], body["dashboard_token"], body["engine_token"])


def bench_value(index: int, size: int = 64) -> str:
    """A synthetic value that carries its index, padded to `size` bytes; it is never printed."""
    head = f"bench-{index:010d}-"
    return head + "x" * (size - len(head))


def value_index(value: str) -> int:
    return int(value[6:16])


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def cpu_times() -> tuple[float, float]:
    """(busy, total) CPU seconds of all CPUs since boot (Linux /proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:8]]
    idle = fields[3] + fields[4]  # idle + iowait
    ticks = os.sysconf("SC_CLK_TCK")
    return (sum(fields) - idle) / ticks, sum(fields) / ticks


def redis_cpu_s() -> float:
    """CPU seconds the Redis server has used, as it reports them (INFO cpu)."""
    import redis as sync_redis

    client = sync_redis.Redis.from_url(REDIS_URL)
    try:
        info = client.info("cpu")
        return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
    finally:
        client.close()


def machine_busy(sample_s: float = 1.0) -> float:
    """The share of all CPUs busy over `sample_s` (0..1): what else is running on the machine."""
    busy0, total0 = cpu_times()
    time.sleep(sample_s)
    busy1, total1 = cpu_times()
    return (busy1 - busy0) / max(1e-9, total1 - total0)


# --- statistics ----------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (the conservative kind: an observed sample, never interpolated)."""
    if not values:
        raise ValueError("no samples")
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "count": float(len(values)),
        "min": min(values),
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": max(values),
        "mean": sum(values) / len(values),
    }


# --- results -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    """One line of the report: a figure beside the raw limit measured in the same run.

    `ratio` is figure / raw (for a latency, how many times slower than raw; for a throughput,
    the fraction of raw achieved). `met` says whether `goal` holds.
    """

    figure: str
    value: float
    unit: str
    raw_name: str
    raw: float
    goal: str
    met: bool
    ratio: float = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ratio", self.value / self.raw if self.raw else math.inf)


def write_result(name: str, figures: list[Figure], details: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {
        "name": name,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "figures": [asdict(f) for f in figures],
        "details": details,
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def format_value(value: float, unit: str) -> str:
    if unit in ("ms", "us"):
        return f"{value:,.3f} {unit}" if value < 10 else f"{value:,.1f} {unit}"
    return f"{value:,.0f} {unit}"


def print_figures(title: str, figures: list[Figure]) -> None:
    print(f"\n{title}")
    print(f"  {'figure':<44} {'value':>14}   {'raw limit':<36} {'raw':>14} {'ratio':>8}  goal")
    for f in figures:
        verdict = "met" if f.met else "MISSED"
        print(
            f"  {f.figure:<44} {format_value(f.value, f.unit):>14}   {f.raw_name:<36} "
            f"{format_value(f.raw, f.unit):>14} {f.ratio:>7.2f}x  {f.goal} ({verdict})"
        )


# --- the machine ---------------------------------------------------------------------------------


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    return 0.0


def _hypervisor() -> str:
    with contextlib.suppress(OSError):
        if "hypervisor" in Path("/proc/cpuinfo").read_text():
            return "virtual machine"
    return "bare metal (no hypervisor flag)"


async def _redis_version() -> str:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        info = await client.info("server")
        return str(info.get("redis_version", "unknown"))
    finally:
        await client.aclose()


def _filesystem(path: Path) -> str:
    with contextlib.suppress(OSError):
        best = ("", "unknown")
        for line in Path("/proc/mounts").read_text().splitlines():
            device, mount, fstype = line.split()[:3]
            if str(path).startswith(mount) and len(mount) > len(best[0]):
                best = (mount, f"{fstype} ({device})")
        return best[1]
    return "unknown"


async def machine() -> dict[str, str]:
    import aiohttp as aiohttp_module
    import cryptography
    import msgspec

    temp = Path(tempfile.gettempdir())
    return {
        "cpu": _cpu_model(),
        "cores": str(os.cpu_count()),
        "memory": f"{_memory_gib():.1f} GiB",
        "host": _hypervisor(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "redis": await _redis_version(),
        "sqlite": sqlite3.sqlite_version,
        "aiohttp": aiohttp_module.__version__,
        "cryptography": cryptography.__version__,
        "msgspec": msgspec.__version__,
        "database folder": f"{temp} on {_filesystem(temp)}",
    }
