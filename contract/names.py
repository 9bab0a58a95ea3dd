"""Name, id and size rules of the public contract (CONTRACT.md, "HTTP API")."""

import re

SECRET_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
SECRET_NAME_MAX = 128
PROJECT_ID_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
VALUE_MAX_BYTES = 65_536
PROJECT_NAME_MAX = 200


def is_valid_name(name: str) -> bool:
    return len(name) <= SECRET_NAME_MAX and SECRET_NAME_RE.fullmatch(name) is not None


def is_valid_project_id(project_id: str) -> bool:
    return PROJECT_ID_RE.fullmatch(project_id) is not None
