"""The `backend-secrets` commands that talk to the API: projects, secrets, credentials, frontend-vars, audit.

Each `add_*` registers one command group and its handlers (functions of the parsed arguments and
the configuration to an exit code); service.cli wires them in and turns a `CliError` into its
message and exit code. Output is a table for people, or the API's JSON with `--json` for scripts.
A value is never an argument: it comes from standard input or a hidden prompt, and no output
contains one (the API never answers one).
"""

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeAlias

from service.cli_client import (
    EXIT_CODES_HELP,
    ApiClient,
    CliError,
    Config,
    ExitCode,
    load_config,
    read_secret_text,
)

Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
Run = Callable[[argparse.Namespace, Config], int]


def common_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("connection")
    group.add_argument("--config", type=Path, help="config file (default: ~/.config/backend-secrets/config.json)")
    group.add_argument("--api-url", help="the API (default: BACKEND_SECRETS_API_URL, else http://127.0.0.1:8080)")
    group.add_argument("--project", help="project id (default: BACKEND_SECRETS_PROJECT, else the config file)")
    group.add_argument("--json", action="store_true", help="print JSON (for scripts) instead of a table")
    return parent


def _handler(run: Run) -> Callable[[argparse.Namespace], int]:
    def handle(args: argparse.Namespace) -> int:
        return run(args, load_config(args.config, args.api_url, args.project, os.environ))

    return handle


def _group(commands: Subcommands, name: str, help_text: str) -> Subcommands:
    parser = commands.add_parser(name, help=help_text, description=help_text, epilog=EXIT_CODES_HELP)
    return parser.add_subparsers(title="commands", metavar="COMMAND", required=True)


def _command(group: Subcommands, name: str, help_text: str, run: Run, parent: argparse.ArgumentParser) -> Any:
    parser = group.add_parser(name, help=help_text, description=help_text, parents=[parent], epilog=EXIT_CODES_HELP)
    parser.set_defaults(handler=_handler(run))
    return parser


def _client(config: Config, *, admin: bool = False) -> ApiClient:
    return ApiClient(config.api_url, config.need_token(admin=admin))


def _print_json(body: Any) -> None:
    print(json.dumps(body, indent=2, sort_keys=True))


def _table(headers: Sequence[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)]
    for row in [list(headers), *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _shown(value: Any) -> str:
    if value is None or value == []:
        return "-"
    return ", ".join(value) if isinstance(value, list) else str(value)


def _if_match(args: argparse.Namespace) -> dict[str, str]:
    return {} if args.if_match is None else {"If-Match": str(args.if_match)}


# projects ---------------------------------------------------------------------------------------


def _projects_create(args: argparse.Namespace, config: Config) -> int:
    body = {"name": args.name, **({"id": args.id} if args.id else {})}
    created = _client(config, admin=True).call("POST", "/api/projects", body=body).json()
    if args.json:
        _print_json(created)
        return ExitCode.OK
    print(f"project {created['id']} created")
    print(f"dashboard token: {created['dashboard_token']}")
    print(f"engine token:    {created['engine_token']}")
    print("the tokens are shown once: store them now (e.g. BACKEND_SECRETS_TOKEN for the dashboard token)")
    return ExitCode.OK


def _projects_rotate_key(args: argparse.Namespace, config: Config) -> int:
    client = _client(config)
    rotated = client.call("POST", client.path("api", "projects", config.need_project(), "rotate-key")).json()
    if args.json:
        _print_json(rotated)
    else:
        print(
            f"project {rotated['project']}: new project key; {rotated['secrets']} secrets and "
            f"{rotated['credentials']} credentials re-encrypted (revision {rotated['revision']})"
        )
    return ExitCode.OK


def _projects_delete(args: argparse.Namespace, config: Config) -> int:
    if not args.yes:
        if not sys.stdin.isatty():
            raise CliError(ExitCode.USAGE, "deleting a project cannot be undone: pass --yes to confirm")
        typed = input(
            f"This destroys project {args.project_id} and every value in it, backups included.\n"
            f"Type the project id to confirm: "
        )
        if typed.strip() != args.project_id:
            raise CliError(ExitCode.USAGE, "not confirmed; nothing was deleted")
    client = _client(config, admin=True)
    client.call("DELETE", client.path("api", "projects", args.project_id))
    print(f"project {args.project_id} deleted; its key is destroyed, so no copy of its data can be decrypted")
    return ExitCode.OK


def add_projects(commands: Subcommands, parent: argparse.ArgumentParser) -> None:
    group = _group(commands, "projects", "create, rotate the key of, or delete a project")
    create = _command(
        group, "create", "create a project (admin token) and print its two tokens", _projects_create, parent
    )
    create.add_argument("name", help="the project's display name")
    create.add_argument("--id", help="the project id (default: made from the name)")
    _command(
        group,
        "rotate-key",
        "re-encrypt every secret and credential of the project under a new project key (online)",
        _projects_rotate_key,
        parent,
    )
    delete = _command(
        group,
        "delete",
        "delete a project for good (admin token): its key is destroyed first, so no backup can be decrypted",
        _projects_delete,
        parent,
    )
    delete.add_argument("project_id", help="the project to delete")
    delete.add_argument("--yes", action="store_true", help="do not ask for confirmation")


# secrets ----------------------------------------------------------------------------------------


def _secrets_list(args: argparse.Namespace, config: Config) -> int:
    client = _client(config)
    listed = client.call("GET", client.path("api", "projects", config.need_project(), "secrets")).json()
    if args.json:
        _print_json(listed)
        return ExitCode.OK
    rows = [
        [
            s["name"],
            str(s["version"]),
            s["updated_at"],
            _shown(s.get("last_used_at")),
            _shown(s.get("used_by")),
            _shown(s.get("previous_valid_until")),
        ]
        for s in listed["secrets"]
    ]
    if not rows:
        print(f"no secrets in project {config.project}")
        return ExitCode.OK
    _table(["NAME", "VERSION", "UPDATED", "LAST USED", "USED BY", "PREVIOUS VALID UNTIL"], rows)
    return ExitCode.OK


def _secrets_set(args: argparse.Namespace, config: Config) -> int:
    client = _client(config)
    path = client.path("api", "projects", config.need_project(), "secrets", args.name)
    body: dict[str, Any] = {"value": read_secret_text(f"value of {args.name}")}
    if args.previous_valid_for is not None:
        body["previous_valid_for_s"] = args.previous_valid_for
    answer = client.call("PUT", path, body=body, headers=_if_match(args))
    meta = answer.json()
    if args.json:
        _print_json(meta)
        return ExitCode.OK
    done = "created" if answer.status == 201 else "updated"
    print(f"secret {meta['name']} {done} (version {meta['version']})")
    if meta.get("previous_valid_until"):
        print(f"the previous value stays valid for verify_webhook until {meta['previous_valid_until']}")
    return ExitCode.OK


def _secrets_delete(args: argparse.Namespace, config: Config) -> int:
    client = _client(config)
    path = client.path("api", "projects", config.need_project(), "secrets", args.name)
    client.call("DELETE", path, headers=_if_match(args))
    if not args.json:
        print(f"secret {args.name} deleted")
    return ExitCode.OK


def add_secrets(commands: Subcommands, parent: argparse.ArgumentParser) -> None:
    group = _group(commands, "secrets", "list, set or delete Backend Secrets (values are write-only)")
    _command(group, "list", "list the project's secrets: names, versions, usage; never a value", _secrets_list, parent)
    put = _command(
        group,
        "set",
        "create or overwrite a secret; the value is read from standard input, or a hidden prompt at a terminal",
        _secrets_set,
        parent,
    )
    put.add_argument("name", help="the secret's name, e.g. STRIPE_WEBHOOK_SIGNING_KEY")
    put.add_argument(
        "--previous-valid-for",
        type=int,
        metavar="SECONDS",
        help="rotating a webhook signing key: the replaced value stays valid for verify_webhook this long "
        "(1 to 604800 s)",
    )
    put.add_argument("--if-match", type=int, metavar="VERSION", help="only if the secret is at this version")
    delete = _command(group, "delete", "delete a secret", _secrets_delete, parent)
    delete.add_argument("name")
    delete.add_argument("--if-match", type=int, metavar="VERSION", help="only if the secret is at this version")


# credentials ------------------------------------------------------------------------------------


def _credentials_list(args: argparse.Namespace, config: Config) -> int:
    client = _client(config)
    listed = client.call("GET", client.path("api", "projects", config.need_project(), "credentials")).json()
    if args.json:
        _print_json(listed)
        return ExitCode.OK
    rows = [[c["name"], c["type"], str(c["version"]), c["updated_at"]] for c in listed["credentials"]]
    if not rows:
        print(f"no credentials in project {config.project}")
        return ExitCode.OK
    _table(["NAME", "TYPE", "VERSION", "UPDATED"], rows)
    return ExitCode.OK


def _credential_fields(client: ApiClient, kind: str) -> dict[str, str]:
    """The fields as a JSON object on standard input, or prompted one by one (secret ones hidden)."""
    if not sys.stdin.isatty():
        try:
            fields = json.loads(sys.stdin.read())
        except ValueError:
            raise CliError(ExitCode.USAGE, "standard input must be a JSON object of the credential's fields") from None
        if not isinstance(fields, dict):
            raise CliError(ExitCode.USAGE, "standard input must be a JSON object of the credential's fields")
        return fields
    types = client.call("GET", "/api/credential-types").json()["credential_types"]
    found = next((t for t in types if t["type"] == kind), None)
    if found is None:
        known = ", ".join(t["type"] for t in types)
        raise CliError(ExitCode.USAGE, f"unknown credential type {kind!r}; known: {known}")
    fields = {}
    for spec in found["fields"]:
        label = f"{kind} {spec['name']}"
        if spec.get("secret", True):
            fields[spec["name"]] = read_secret_text(label)
        else:
            fields[spec["name"]] = input(f"{label}: ")
    return fields


def _credentials_set(args: argparse.Namespace, config: Config) -> int:
    client = _client(config)
    path = client.path("api", "projects", config.need_project(), "credentials", args.name)
    body = {"type": args.type, "fields": _credential_fields(client, args.type)}
    answer = client.call("PUT", path, body=body, headers=_if_match(args))
    meta = answer.json()
    if args.json:
        _print_json(meta)
    else:
        done = "created" if answer.status == 201 else "updated"
        print(f"credential {meta['name']} ({meta['type']}) {done} (version {meta['version']})")
    return ExitCode.OK


def _credentials_delete(args: argparse.Namespace, config: Config) -> int:
    client = _client(config)
    path = client.path("api", "projects", config.need_project(), "credentials", args.name)
    client.call("DELETE", path, headers=_if_match(args))
    if not args.json:
        print(f"credential {args.name} deleted")
    return ExitCode.OK


def add_credentials(commands: Subcommands, parent: argparse.ArgumentParser) -> None:
    group = _group(commands, "credentials", "list, set or delete typed Credentials (write-only)")
    _command(group, "list", "list the project's credentials: names, types, versions", _credentials_list, parent)
    put = _command(
        group,
        "set",
        "create or overwrite a credential; its fields come from standard input as a JSON object "
        '(e.g. {"secret_key": "sk_live_..."}), or are prompted for at a terminal, secret ones hidden',
        _credentials_set,
        parent,
    )
    put.add_argument("name", help="the credential's name, e.g. STRIPE")
    put.add_argument("--type", required=True, help="stripe, openai, slack, resend, http_bearer, http_basic, ...")
    put.add_argument("--if-match", type=int, metavar="VERSION", help="only if the credential is at this version")
    delete = _command(group, "delete", "delete a credential", _credentials_delete, parent)
    delete.add_argument("name")
    delete.add_argument("--if-match", type=int, metavar="VERSION", help="only if the credential is at this version")


# frontend vars ----------------------------------------------------------------------------------


def _frontend_vars_export(args: argparse.Namespace, config: Config) -> int:
    client = _client(config)
    answer = client.call("GET", client.path("api", "projects", config.need_project(), "frontend-vars.env"))
    if args.output is None:
        sys.stdout.write(answer.body.decode("utf-8"))
        return ExitCode.OK
    args.output.write_bytes(answer.body)
    print(f"wrote the Frontend (Build) vars of {config.project} to {args.output}", file=sys.stderr)
    return ExitCode.OK


def add_frontend_vars(commands: Subcommands, parent: argparse.ArgumentParser) -> None:
    group = _group(commands, "frontend-vars", "Frontend (Build) vars: public values for the browser bundle")
    export = _command(
        group, "export", "write the project's Frontend (Build) vars as a .env file", _frontend_vars_export, parent
    )
    export.add_argument("--output", "-o", type=Path, help="the file to write (default: standard output)")


# audit ------------------------------------------------------------------------------------------


def _detail(entry: dict[str, Any]) -> str:
    parts = []
    if entry.get("version") is not None:
        parts.append(f"v{entry['version']}")
    if entry.get("execution_id"):
        parts.append(f"execution {entry['execution_id']} node {entry.get('node_id')}")
    if entry.get("status"):
        parts.append(f"HTTP {entry['status']} {entry.get('code') or ''}".rstrip())
    if entry.get("suppressed"):
        parts.append(f"({entry['suppressed']} more refused before, not logged)")
    return " ".join(parts)


def _audit(args: argparse.Namespace, config: Config) -> int:
    client = _client(config)
    path = client.path("api", "projects", config.need_project(), "audit")
    query = {
        k: str(v)
        for k, v in (
            ("name", args.name),
            ("actor", args.actor),
            ("since", args.since),
            ("until", args.until),
            ("limit", args.limit),
        )
        if v is not None
    }
    rows: list[list[str]] = []
    while True:
        page = client.call("GET", path, query=query).json()
        for entry in page["entries"]:
            if args.json:
                print(json.dumps(entry, sort_keys=True))
                continue
            actor = entry["actor"]["kind"] + (f":{entry['actor']['id']}" if entry["actor"].get("id") else "")
            store = entry.get("store") or "-"
            rows.append(
                [
                    entry["at"],
                    entry["action"],
                    actor,
                    store,
                    entry.get("op") or "-",
                    entry.get("name") or "-",
                    _detail(entry),
                ]
            )
        if not args.all or page["next_before"] is None:
            break
        query["before"] = str(page["next_before"])
    if not args.json:
        if rows:
            _table(["AT", "ACTION", "ACTOR", "STORE", "OP", "NAME", "DETAIL"], rows)
        else:
            print("no audit entries match")
    return ExitCode.OK


def add_audit(commands: Subcommands, parent: argparse.ArgumentParser) -> None:
    help_text = "the project's audit log, newest first: changes, engine reads, refused requests (never a value)"
    parser = commands.add_parser(
        "audit", help=help_text, description=help_text, parents=[parent], epilog=EXIT_CODES_HELP
    )
    parser.add_argument("--name", help="only entries about this secret, credential, var or workflow")
    parser.add_argument("--actor", help="only this actor: a kind (dashboard, engine, admin), a token id, or kind:id")
    parser.add_argument("--since", help="from this RFC 3339 time on, e.g. 2024-05-01T00:00:00Z")
    parser.add_argument("--until", help="before this RFC 3339 time")
    parser.add_argument("--limit", type=int, help="entries per page (1-500, default 100)")
    parser.add_argument("--all", action="store_true", help="follow the pages to the oldest entry")
    parser.set_defaults(handler=_handler(_audit))
