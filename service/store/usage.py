"""Usage of secrets and credentials: `used_by` (saved workflows) and `last_used_at` (engine reads).

`used_by` is kept in `workflow_refs` by the workflow's own put (in the same transaction), and
deleted with the workflow (ON DELETE CASCADE). A reference may name a secret that is not set yet:
the row stays, and `used_by` shows it once the secret exists.

An execution's reads (which node read which secret or credential, reported by the worker with the
result) become audit entries and stamp `last_used_at`, in the transaction that records the result.
"""

import time
from typing import Final

import msgspec

from contract.executions import SecretRead
from contract.workflows import CODE_NODE_TYPES, Workflow
from service.actor import Actor
from service.store.audit import NewEntry
from service.store.db import fetch_all
from service.store.secrets import mark_used
from service.store.writer import Operation, Transaction
from service.workflow_validation import referenced_secrets

_workflow: Final = msgspec.json.Decoder(Workflow)
MAX_READS_RECORDED: Final = 1_000  # per result: a worker's report is trusted, but not without bound
BACKFILLED: Final = "workflow_refs_v1"  # the `meta` key set once every workflow saved before migration 5 is indexed


def referenced_credentials(workflow: Workflow) -> set[str]:
    """Credentials named by integration nodes (`"credential": "NAME"`); code nodes may not name one."""
    return {
        name
        for node in workflow.nodes
        if node.type not in CODE_NODE_TYPES and isinstance(name := node.config.get("credential"), str) and name
    }


async def replace_refs(tx: Transaction, project_id: str, workflow_name: str, definition: bytes) -> None:
    """Index what the just-saved `definition` references, replacing what its previous version did."""
    workflow = _workflow.decode(definition)
    refs = [("secret", name) for name in referenced_secrets(workflow)]
    refs += [("credential", name) for name in referenced_credentials(workflow)]
    await tx.conn.execute(
        "DELETE FROM workflow_refs WHERE project_id = ? AND workflow = ?", (project_id, workflow_name)
    )
    if refs:
        await tx.conn.executemany(
            "INSERT INTO workflow_refs (project_id, workflow, kind, name) VALUES (?, ?, ?, ?)",
            [(project_id, workflow_name, kind, name) for kind, name in sorted(refs)],
        )


def backfill_refs() -> Operation[int]:
    """Index every workflow saved before usage was tracked; once per database. Returns how many."""

    async def operation(tx: Transaction) -> int:
        done = await fetch_all(tx.conn, "SELECT 1 FROM meta WHERE key = ?", (BACKFILLED,))
        if done:
            return 0
        rows = await fetch_all(tx.conn, "SELECT project_id, name, definition FROM workflows")
        for project_id, name, definition in rows:
            await replace_refs(tx, project_id, name, str(definition).encode())
        await tx.conn.execute("INSERT INTO meta (key, value) VALUES (?, '1')", (BACKFILLED,))
        return len(rows)

    return operation


async def record_reads(
    tx: Transaction, project_id: str, execution_id: str, worker: str, reads: list[SecretRead]
) -> None:
    """One audit entry per distinct read, and `last_used_at` on the secrets read."""
    distinct = list(dict.fromkeys(reads))[:MAX_READS_RECORDED]
    actor = Actor("engine", worker or None)
    for read in distinct:
        tx.record(
            NewEntry(
                project=project_id,
                action="read",
                actor=actor,
                store=read.kind,
                op="read",
                name=read.name,
                execution_id=execution_id,
                node_id=read.node_id,
            )
        )
    secrets = {read.name for read in distinct if read.kind == "secret"}
    if secrets:
        await mark_used(tx, project_id, secrets, time.time())
