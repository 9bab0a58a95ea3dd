"""The `backend-secrets` CLI against a real service process: round trips through every command, the
configuration sources, the exit codes, `--help` everywhere, and `keys rewrap` on a live service
after which the old master key is removed. No value ever reaches the output or the service log."""

import argparse
import json
import secrets as random
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.fernet import Fernet

from contract.sealing import open_sealed
from service.cli import build_parser, main
from tests.support.processes import REPO_ROOT, ServiceProcess, clean_environ, service_process

pytestmark = pytest.mark.timeout(120)


@dataclass
class Cli:
    env: dict[str, str]

    def run(self, *args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "service.cli", *args],
            input=stdin,
            env={**self.env, **env},
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def ok(self, *args: str, stdin: str = "", **env: str) -> str:
        done = self.run(*args, stdin=stdin, **env)
        assert done.returncode == 0, (args, done.returncode, done.stdout, done.stderr)
        return done.stdout


@dataclass
class Service:
    tmp: Path
    redis_url: str
    prefix: str
    admin: str
    running: ServiceProcess | None = None

    async def start(self, master_keys: str) -> ServiceProcess:
        self.stop()
        self.running = service_process(
            self.tmp, redis_url=self.redis_url, prefix=self.prefix, master_key=master_keys, admin_token=self.admin
        )
        self.running.process.start()
        await self.running.wait_healthy()
        return self.running

    def stop(self) -> None:
        if self.running is not None:
            self.running.process.stop()
            self.running = None


@pytest.fixture
async def service(tmp_path: Path, redis_url: str, prefix: str) -> AsyncIterator[Service]:
    started = Service(tmp_path, redis_url, prefix, "cli-admin-" + random.token_hex(8))
    yield started
    started.stop()


def cli_for(running: ServiceProcess, home: Path, **env: str) -> Cli:
    return Cli(
        clean_environ(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), BACKEND_SECRETS_API_URL=running.url, **env)
    )


async def test_round_trips_through_every_command(service: Service, tmp_path: Path) -> None:
    old_key = Fernet.generate_key().decode()
    running = await service.start(old_key)
    admin_cli = cli_for(running, tmp_path / "home", BACKEND_SECRETS_ADMIN_TOKEN=service.admin)
    created = json.loads(admin_cli.ok("projects", "create", "Shop", "--id", "shop", "--json"))
    assert created["id"] == "shop" and created["dashboard_token"].startswith("bsd_")
    human = admin_cli.ok("projects", "create", "Other")
    assert "created" in human and "dashboard token: bsd_" in human

    # The dashboard token and the project from a config file (no environment).
    config = tmp_path / "home" / ".config" / "backend-secrets" / "config.json"
    config.parent.mkdir(parents=True)
    config.write_text(json.dumps({"api_url": running.url, "token": created["dashboard_token"], "project": "shop"}))
    config.chmod(0o600)
    cli = Cli(clean_environ(HOME=str(tmp_path / "home"), XDG_CONFIG_HOME=str(tmp_path / "home" / ".config")))
    value, value2 = f"canary-{random.token_hex(10)}", f"canary-{random.token_hex(10)}"
    outputs = [cli.ok("secrets", "set", "API_KEY", stdin=value + "\n")]
    assert "secret API_KEY created (version 1)" in outputs[-1]
    outputs.append(cli.ok("secrets", "set", "API_KEY", "--previous-valid-for", "60", stdin=value2))
    assert "updated (version 2)" in outputs[-1] and "valid for verify_webhook until" in outputs[-1]
    outputs.append(cli.ok("secrets", "list"))
    assert "API_KEY" in outputs[-1] and "NAME" in outputs[-1]
    listed = json.loads(cli.ok("secrets", "list", "--json"))
    assert [(s["name"], s["version"]) for s in listed["secrets"]] == [("API_KEY", 2)]

    # The value arrived exactly as piped (one trailing newline dropped): the engine decrypts it.
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"{running.url}/api/engine/shop/secrets", headers={"Authorization": f"Bearer {created['engine_token']}"}
        ) as response:
            snapshot = await response.json()
        async with http.put(
            f"{running.url}/api/projects/shop/frontend-vars/PUBLIC_URL",
            json={"value": "https://shop.example"},
            headers={"Authorization": f"Bearer {created['dashboard_token']}"},
        ) as response:
            assert response.status == 201
    entry = snapshot["secrets"][0]
    fernet = Fernet(snapshot["data_key"])
    assert open_sealed(fernet, entry["ciphertext"], "shop", "secret", "API_KEY") == value2
    assert open_sealed(fernet, entry["previous_ciphertext"], "shop", "secret", "API_KEY") == value

    stripe = "sk_test_" + random.token_hex(12)
    outputs.append(cli.ok("credentials", "set", "STRIPE", "--type", "stripe", stdin=json.dumps({"secret_key": stripe})))
    assert "credential STRIPE (stripe) created" in outputs[-1]
    outputs.append(cli.ok("credentials", "list"))
    assert "STRIPE" in outputs[-1] and "stripe" in outputs[-1]
    assert 'PUBLIC_URL="https://shop.example"' in cli.ok("frontend-vars", "export")
    exported = tmp_path / "shop.env"
    cli.ok("frontend-vars", "export", "--output", str(exported))
    assert 'PUBLIC_URL="https://shop.example"' in exported.read_text()
    outputs.append(cli.ok("projects", "rotate-key"))
    assert "1 secrets and 1 credentials re-encrypted" in outputs[-1]
    outputs.append(cli.ok("credentials", "delete", "STRIPE"))
    outputs.append(cli.ok("secrets", "delete", "API_KEY"))

    outputs.append(cli.ok("audit"))
    assert "secret" in outputs[-1] and "key_rotate" in outputs[-1] and "admin" in outputs[-1]
    lines = [
        json.loads(line)
        for line in cli.ok("audit", "--json", "--name", "API_KEY", "--all", "--limit", "1").splitlines()
    ]
    assert [(e["op"], e.get("version")) for e in lines] == [("delete", 2), ("put", 2), ("put", 1)]

    for output in outputs:
        assert value not in output and value2 not in output and stripe not in output
    log = service.running.process.log_text() if service.running else ""
    assert value not in log and value2 not in log and stripe not in log

    assert "deleted" in admin_cli.ok("projects", "delete", "shop", "--yes")
    assert cli.run("secrets", "list").returncode == 4  # the project and its tokens are gone


async def test_exit_codes_and_helpful_errors(service: Service, tmp_path: Path) -> None:
    running = await service.start(Fernet.generate_key().decode())
    admin_cli = cli_for(running, tmp_path / "home", BACKEND_SECRETS_ADMIN_TOKEN=service.admin)
    created = json.loads(admin_cli.ok("projects", "create", "Shop", "--id", "shop", "--json"))
    cli = cli_for(
        running, tmp_path / "home", BACKEND_SECRETS_TOKEN=created["dashboard_token"], BACKEND_SECRETS_PROJECT="shop"
    )
    cli.ok("secrets", "set", "API_KEY", stdin="one")

    no_token = cli_for(running, tmp_path / "home", BACKEND_SECRETS_PROJECT="shop").run("secrets", "list")
    assert no_token.returncode == 2 and "BACKEND_SECRETS_TOKEN" in no_token.stderr
    no_project = cli_for(running, tmp_path / "home", BACKEND_SECRETS_TOKEN=created["dashboard_token"]).run(
        "secrets", "list"
    )
    assert no_project.returncode == 2 and "--project" in no_project.stderr
    bad_token = cli.run("secrets", "list", BACKEND_SECRETS_TOKEN="bsd_wrong")
    assert bad_token.returncode == 4 and "invalid_token" in bad_token.stderr
    engine = cli.run("secrets", "list", BACKEND_SECRETS_TOKEN=created["engine_token"])
    assert engine.returncode == 4 and "wrong_token_scope" in engine.stderr
    assert cli.run("secrets", "delete", "NOPE").returncode == 3
    assert cli.run("secrets", "list", "--project", "nope").returncode == 3
    mismatch = cli.run("secrets", "set", "API_KEY", "--if-match", "9", stdin="two")
    assert mismatch.returncode == 5 and "version_mismatch" in mismatch.stderr
    empty = cli.run("secrets", "set", "API_KEY", stdin="")
    assert empty.returncode == 2 and "empty" in empty.stderr
    invalid = cli.run("secrets", "set", "API_KEY", "--previous-valid-for", "0", stdin="three")
    assert invalid.returncode == 1 and "previous_valid_for_s" in invalid.stderr
    unreachable = cli.run("secrets", "list", BACKEND_SECRETS_API_URL="http://127.0.0.1:9")
    assert unreachable.returncode == 6 and "cannot reach" in unreachable.stderr
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert cli.run("secrets", "list", "--config", str(broken)).returncode == 2
    assert cli.run("secrets", "list", "--config", str(tmp_path / "missing.json")).returncode == 2
    not_confirmed = admin_cli.run("projects", "delete", "shop")
    assert not_confirmed.returncode == 2 and "--yes" in not_confirmed.stderr
    assert cli.run("credentials", "set", "X", "--type", "stripe", stdin="[1]").returncode == 2
    assert cli.run("secrets", "bogus").returncode == 2  # argparse: usage error
    assert cli.run().returncode == 2


def _every_command(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _every_command(sub, (*path, name))


def test_help_everywhere(capsys: pytest.CaptureFixture[str]) -> None:
    commands = list(_every_command(build_parser()))
    assert ("secrets", "set") in commands and ("keys", "rewrap") in commands and ("audit",) in commands
    for command in commands:
        with pytest.raises(SystemExit) as exited:
            main([*command, "--help"])
        assert exited.value.code == 0, command
        out = capsys.readouterr().out
        assert out.startswith("usage: backend-secrets"), command
        if command[:1] not in (("serve",), ("worker",), ("dev",)):  # the programs keep their own conventions
            assert "exit codes: 0 ok" in out, command


async def test_keys_rewrap_on_a_live_service_then_the_old_key_goes(service: Service, tmp_path: Path) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    running = await service.start(old)
    admin_cli = cli_for(running, tmp_path / "home", BACKEND_SECRETS_ADMIN_TOKEN=service.admin)
    projects: list[dict[str, Any]] = []
    for i in range(5):
        created = json.loads(admin_cli.ok("projects", "create", f"P{i}", "--id", f"p{i}", "--json"))
        cli_for(running, tmp_path / "home", BACKEND_SECRETS_TOKEN=created["dashboard_token"]).ok(
            "secrets", "set", "TOKEN", "--project", created["id"], stdin=f"value-{i}"
        )
        projects.append(created)

    running = await service.start(f"{new},{old}")  # step 1: the new key first, the old one still listed
    server_env = clean_environ(
        BACKEND_SECRETS_DB=str(tmp_path / "backend-secrets.db"), BACKEND_SECRETS_MASTER_KEYS=f"{new},{old}"
    )
    done = Cli(server_env).run("keys", "rewrap", "--batch-size", "2")  # step 2, while the API serves
    assert done.returncode == 0, done.stderr
    assert "rewrap: 2/5" in done.stderr and "rewrap: 5/5" in done.stderr
    assert "all 5 project keys are under the first master key" in done.stdout
    again = Cli(server_env).run("keys", "rewrap")
    assert again.returncode == 0 and "0 re-wrapped, 5 already" in again.stderr

    running = await service.start(new)  # step 3: the old key removed
    async with aiohttp.ClientSession() as http:
        for i, project in enumerate(projects):
            engine = {"Authorization": f"Bearer {project['engine_token']}"}
            async with http.get(f"{running.url}/api/engine/{project['id']}/secrets", headers=engine) as response:
                assert response.status == 200, await response.text()
                snapshot = await response.json()
            fernet = Fernet(snapshot["data_key"])
            assert (
                open_sealed(fernet, snapshot["secrets"][0]["ciphertext"], project["id"], "secret", "TOKEN")
                == f"value-{i}"
            )

    missing = Cli(clean_environ(BACKEND_SECRETS_DB=str(tmp_path / "nope.db"), BACKEND_SECRETS_MASTER_KEYS=new)).run(
        "keys", "rewrap"
    )
    assert missing.returncode == 2 and "no database" in missing.stderr
    assert Cli(clean_environ()).run("keys", "rewrap").returncode == 2  # no master keys: a configuration error
