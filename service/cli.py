"""`backend-secrets`: the programs and the local stack behind one command.

    backend-secrets serve            the API            (the same as `python -m service`)
    backend-secrets worker [--check] the engine side    (the same as `python -m worker`)
    backend-secrets dev              the whole local stack: API, worker, and Redis if none answers
    backend-secrets keys rewrap      re-wrap every project key under the first master key (on the server)

and the API's client commands (service.cli_commands): `projects create|rotate-key|delete`,
`secrets list|set|delete`, `credentials list|set|delete`, `frontend-vars export`, `audit`.

Each subcommand is added by one `add_*` function that registers its parser and its handler, a
function from the parsed arguments to an exit code; a new subcommand is one more such function.
A handler reports a user's mistake or an API refusal by raising `CliError` (message and exit code,
service.cli_client.ExitCode).
"""

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeAlias

from service import cli_commands
from service.cli_client import EXIT_CODES_HELP, CliError, ExitCode, warn

Handler = Callable[[argparse.Namespace], int]
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def run_module(module: str, *args: str) -> int:
    """Become `python -m module`: the same process, so signals and exit codes need no forwarding."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", module, *args])  # noqa: S606 - our own interpreter


def serve(args: argparse.Namespace) -> int:
    return run_module("service")


def worker(args: argparse.Namespace) -> int:
    return run_module("worker", *(["--check"] if args.check else []))


def dev(args: argparse.Namespace) -> int:
    from service import devstack  # fakeredis and the supervisor load only for this command

    return devstack.run(args.data_dir, port=args.port)


def keys_rewrap(args: argparse.Namespace) -> int:
    from contract.config import ConfigError
    from service.keyring import KeyRing
    from service.keystore import Keystore
    from service.rewrap import Progress, remaining, rewrap_all
    from service.settings import Settings

    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        raise CliError(ExitCode.USAGE, f"configuration error: {exc}") from None
    if not settings.db_path.exists():
        raise CliError(ExitCode.USAGE, f"no database at {settings.db_path} (set BACKEND_SECRETS_DB)")
    keyring = KeyRing(settings.master_keys, Keystore(settings.keystore))

    def report(progress: Progress) -> None:
        print(
            f"rewrap: {progress.seen}/{progress.total} project keys looked at: {progress.rewrapped} re-wrapped, "
            f"{progress.already} already under the first master key",
            file=sys.stderr,
            flush=True,
        )

    progress = rewrap_all(
        settings.db_path,
        keyring,
        batch_size=args.batch_size,
        busy_timeout_ms=settings.sqlite_busy_timeout_ms,
        on_batch=report,
    )
    left = remaining(settings.db_path, keyring)
    if progress.failed or left:
        if progress.failed:
            warn(f"no configured master key unwraps the key of: {', '.join(progress.failed)}")
        if left:
            warn(f"still not under the first master key (run again): {', '.join(left)}")
        return ExitCode.API_ERROR
    print(
        f"all {progress.total - progress.vanished} project keys are under the first master key: the other keys in "
        "BACKEND_SECRETS_MASTER_KEYS can now be removed (restart the service after removing them)"
    )
    return ExitCode.OK


def add_keys(commands: Subcommands) -> None:
    description = (
        "Master key rotation, step 2 of 3. (1) Put the new Fernet key first in BACKEND_SECRETS_MASTER_KEYS, keep "
        "the old one after it, and restart the service. (2) Run `keys rewrap` on the server with the service's "
        "environment (BACKEND_SECRETS_DB, BACKEND_SECRETS_MASTER_KEYS, BACKEND_SECRETS_KEYSTORE) while the API "
        "keeps serving: it re-wraps every project key under the first master key in small batches, each "
        "committed on its own; if interrupted, run it again: what is done is skipped. (3) When it says so, "
        "remove the old key and restart the service."
    )
    group = commands.add_parser("keys", help="master key rotation", description=description, epilog=EXIT_CODES_HELP)
    keys = group.add_subparsers(title="commands", metavar="COMMAND", required=True)
    rewrap = keys.add_parser(
        "rewrap",
        help="re-wrap every project key under the first master key (resumable, online)",
        description=description,
        epilog=EXIT_CODES_HELP + " (1 here: some keys are not re-wrapped yet)",
    )
    rewrap.add_argument("--batch-size", type=int, default=50, help="project keys per transaction (default 50)")
    rewrap.set_defaults(handler=keys_rewrap)


def add_serve(commands: Subcommands) -> None:
    parser = commands.add_parser("serve", help="run the API (configuration from the environment)")
    parser.set_defaults(handler=serve)


def add_worker(commands: Subcommands) -> None:
    parser = commands.add_parser("worker", help="run the worker: follows change events, resolves secrets")
    parser.add_argument(
        "--check",
        action="store_true",
        help="health check: exit 0 if the running worker's /healthz says it follows the events stream",
    )
    parser.set_defaults(handler=worker)


def add_dev(commands: Subcommands) -> None:
    parser = commands.add_parser(
        "dev",
        help="run the whole local stack: API, worker, and an embedded Redis when none answers",
        description="Run the API and the worker for local development. Generates a master key and an admin "
        "token into the data folder when the environment has none, and starts an embedded Redis-compatible "
        "server when nothing answers at REDIS_URL. Ctrl-C stops everything.",
    )
    parser.add_argument("--data-dir", type=Path, default=Path("data"), help="the data folder (default: ./data)")
    parser.add_argument("--port", type=int, help="the API port (default: BACKEND_SECRETS_PORT, else 8080)")
    parser.set_defaults(handler=dev)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="backend-secrets",
        description="Runtime secrets for workflows: the API, the worker, the local stack, and a client for the API.",
        epilog=EXIT_CODES_HELP,
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for add in (add_serve, add_worker, add_dev, add_keys):
        add(commands)
    common = cli_commands.common_options()
    for add_client in (
        cli_commands.add_projects,
        cli_commands.add_secrets,
        cli_commands.add_credentials,
        cli_commands.add_frontend_vars,
        cli_commands.add_audit,
    ):
        add_client(commands, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except CliError as exc:
        warn(exc.message)
        return int(exc.code)
    except KeyboardInterrupt:
        warn("interrupted")
        return int(ExitCode.INTERRUPTED)


if __name__ == "__main__":
    sys.exit(main())
