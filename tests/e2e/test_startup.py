"""Starting the programs: a missing or malformed master key is a clear start-up error."""

import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from tests.support.processes import REPO_ROOT, clean_environ, free_port

pytestmark = pytest.mark.timeout(30)


def run_service(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = clean_environ(
        BACKEND_SECRETS_DB=str(tmp_path / "db.sqlite"), BACKEND_SECRETS_PORT=str(free_port()), **env
    )
    return subprocess.run(
        [sys.executable, "-m", "service"], env=environ, cwd=REPO_ROOT, capture_output=True, text=True, timeout=20
    )


def test_the_service_refuses_to_start_without_a_master_key(tmp_path: Path) -> None:
    result = run_service(tmp_path)
    assert result.returncode != 0
    assert "BACKEND_SECRETS_MASTER_KEYS" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_service_refuses_a_malformed_master_key_without_printing_it(tmp_path: Path) -> None:
    almost = Fernet.generate_key().decode()[:-3]
    result = run_service(tmp_path, BACKEND_SECRETS_MASTER_KEYS=almost)
    assert result.returncode != 0
    assert "BACKEND_SECRETS_MASTER_KEYS" in result.stderr
    assert almost not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_the_service_reads_an_unreadable_key_file_as_a_clear_error(tmp_path: Path) -> None:
    result = run_service(tmp_path, BACKEND_SECRETS_MASTER_KEYS_FILE=str(tmp_path / "missing-key"))
    assert result.returncode != 0
    assert "BACKEND_SECRETS_MASTER_KEYS_FILE" in result.stderr
    assert "Traceback" not in result.stderr
