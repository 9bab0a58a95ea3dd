"""Checking a workflow when it is saved: every refusal is a 422 naming the node and the field.

Configs are checked with their `${ }` expressions still in place: each string is parsed, each
`${ nodes.X.output }` must name an earlier node, and the config is decoded into its node type's
Struct with every whole-expression string standing in for a value of the field's type (such a
string keeps the JSON type of what it resolves to, so it may fill an integer field).

A `javascript_code` node is not a template (JavaScript has its own `${}`) and never sees
secrets: any secret reference or credential in it is refused with
`secrets_not_allowed_in_code_node`.
"""

import re
from typing import Any, Final

import msgspec
import msgspec.inspect as mi

from contract.templates import Ref, TemplateError, mentions_secrets, parse, secret_names_in
from contract.workflows import CODE_NODE_TYPES, NODE_CONFIGS, NODE_ID_RE, Node, Workflow
from service.errors import InvalidField, MalformedBody

WORKFLOW_NAME_RE: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_\-]*")
WORKFLOW_NAME_MAX: Final = 128
MAX_NODES: Final = 100
_NODE_ID: Final = re.compile(NODE_ID_RE)

_CREDENTIAL_KEYS: Final = frozenset({"credential", "credentials"})


def valid_workflow_name(name: str) -> str:
    if len(name) > WORKFLOW_NAME_MAX or WORKFLOW_NAME_RE.fullmatch(name) is None:
        raise InvalidField(
            f"workflow name must match ^[A-Za-z0-9_][A-Za-z0-9_-]*$ and be at most {WORKFLOW_NAME_MAX} characters",
            code="invalid_name",
        )
    return name


def _invalid(code: str, message: str) -> InvalidField:
    return InvalidField(message, code=code)


def decode_workflow(raw: bytes) -> Workflow:
    """Parse and check a definition; raises 400 for bad JSON, 422 for anything invalid."""
    try:
        workflow = msgspec.json.decode(raw, type=Workflow)
    except msgspec.ValidationError as exc:
        raise _invalid("invalid_workflow", f"invalid workflow: {exc}") from None
    except msgspec.DecodeError:
        raise MalformedBody("the body is not valid JSON") from None
    check_workflow(workflow)
    return workflow


def check_workflow(workflow: Workflow) -> None:
    if not workflow.nodes:
        raise _invalid("invalid_workflow", "a workflow needs at least one node")
    if len(workflow.nodes) > MAX_NODES:
        raise _invalid("invalid_workflow", f"a workflow has at most {MAX_NODES} nodes")
    earlier: set[str] = set()
    for position, node in enumerate(workflow.nodes):
        _check_node_header(node, position, earlier)
        if node.type in CODE_NODE_TYPES:
            _check_code_node(node)
        else:
            _check_expressions(node, earlier)
        _check_config(node)
        earlier.add(node.id)


def referenced_secrets(workflow: Workflow) -> set[str]:
    """The Backend Secrets a (checked) workflow reads; code nodes read none."""
    names: set[str] = set()
    for node in workflow.nodes:
        if node.type not in CODE_NODE_TYPES:
            names |= secret_names_in(node.config)
    return names


def _check_node_header(node: Node, position: int, earlier: set[str]) -> None:
    if _NODE_ID.fullmatch(node.id) is None:
        raise _invalid(
            "invalid_node_id", f"node #{position + 1}: field 'id' must match {NODE_ID_RE} (letters, digits, _ and -)"
        )
    if node.id in earlier:
        raise _invalid("duplicate_node_id", f"node {node.id!r}: field 'id' is used by an earlier node")
    if node.type not in NODE_CONFIGS:
        known = ", ".join(sorted(NODE_CONFIGS))
        message = f"node {node.id!r}: field 'type': unknown node type {node.type!r}; known: {known}"
        raise _invalid("unknown_node_type", message)


def _strings(value: Any, path: str) -> list[tuple[str, str]]:
    """Every string in a JSON-like value, with its path (`config.headers.Authorization`)."""
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, dict):
        return [item for key, inner in value.items() for item in _strings(inner, f"{path}.{key}")]
    if isinstance(value, list):
        return [item for index, inner in enumerate(value) for item in _strings(inner, f"{path}[{index}]")]
    return []


def _check_code_node(node: Node) -> None:
    refused = f"node {node.id!r} ({node.type})"
    for key in node.config:
        if key in _CREDENTIAL_KEYS:
            raise _invalid(
                "secrets_not_allowed_in_code_node",
                f"{refused}: field 'config.{key}': a code node cannot use credentials; "
                "read the credential in an http_request node and pass its result on",
            )
    for path, text in _strings(node.config, "config"):
        if mentions_secrets(text):
            raise _invalid(
                "secrets_not_allowed_in_code_node",
                f"{refused}: field {path!r} references a secret; a code node gets ctx.env and input, never "
                "secrets: use the secret in another node (http_request, verify_webhook) and pass its result on",
            )


def _check_expressions(node: Node, earlier: set[str]) -> None:
    for path, text in _strings(node.config, "config"):
        if "${" not in text:
            continue
        try:
            parts = parse(text)
        except TemplateError as exc:
            raise _invalid("invalid_expression", f"node {node.id!r}: field {path!r}: {exc}") from None
        for part in parts:
            if isinstance(part, Ref) and part.root == "nodes" and part.path[0] not in earlier:
                raise _invalid(
                    "invalid_node_reference",
                    f"node {node.id!r}: field {path!r}: ${{ {part.text} }} refers to node {part.path[0]!r}, "
                    "which does not run before this node",
                )


def _whole_expression(value: Any) -> bool:
    if not isinstance(value, str) or "${" not in value:
        return False
    try:
        parts = parse(value)
    except TemplateError:
        return False
    return len(parts) == 1 and isinstance(parts[0], Ref)


def _accepts_text(kind: mi.Type) -> bool:
    if isinstance(kind, mi.UnionType):
        return any(_accepts_text(member) for member in kind.types)
    return isinstance(kind, mi.StrType | mi.AnyType)


def _stand_in(kind: mi.Type) -> Any:
    """A value of `kind`, for a field whose expression resolves only when the node runs."""
    if isinstance(kind, mi.LiteralType):
        return kind.values[0]
    if isinstance(kind, mi.UnionType):
        return _stand_in(next(m for m in kind.types if not isinstance(m, mi.NoneType)))
    if isinstance(kind, mi.BoolType):
        return False
    if isinstance(kind, mi.IntType | mi.FloatType):
        return 0
    if isinstance(kind, mi.DictType):
        return {}
    if isinstance(kind, mi.ListType):
        return []
    return None


def _with_stand_ins(config: dict[str, Any], config_type: type[msgspec.Struct]) -> dict[str, Any]:
    info = mi.type_info(config_type)
    assert isinstance(info, mi.StructType)
    fields = {field.encode_name: field.type for field in info.fields}
    return {
        key: _stand_in(fields[key])
        if key in fields and _whole_expression(value) and not _accepts_text(fields[key])
        else value
        for key, value in config.items()
    }


def _check_config(node: Node) -> None:
    config_type = NODE_CONFIGS[node.type]
    try:
        config = msgspec.convert(_with_stand_ins(node.config, config_type), config_type)
    except msgspec.ValidationError as exc:
        detail = str(exc).replace("- at `$", "- at `config")
        raise _invalid("invalid_node_config", f"node {node.id!r} ({node.type}): invalid config: {detail}") from None
    status = getattr(config, "status", 200)
    if isinstance(status, int) and not 100 <= status <= 599 and not _whole_expression(node.config.get("status")):
        raise _invalid("invalid_node_config", f"node {node.id!r} ({node.type}): field 'config.status' must be 100-599")
