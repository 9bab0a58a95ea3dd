"""`backend-secrets`: the programs and the local stack behind one command.

    backend-secrets serve            the API            (the same as `python -m service`)
    backend-secrets worker [--check] the engine side    (the same as `python -m worker`)
    backend-secrets dev              the whole local stack: API, worker, and Redis if none answers

Each subcommand is added by one `add_*` function that registers its parser and its handler, a
function from the parsed arguments to an exit code; a new subcommand is one more such function.
"""

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeAlias

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
        prog="backend-secrets", description="Runtime secrets for workflows: the API, the worker, the local stack."
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for add in (add_serve, add_worker, add_dev):
        add(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
