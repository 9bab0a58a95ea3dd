"""Settings from the environment: clear start-up errors, the X_FILE convention, reprs that hide secrets."""

from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from contract.config import ConfigError, Secret, read_env
from service.settings import Settings
from worker.settings import WorkerSettings

pytestmark = pytest.mark.timeout(10)

KEY = Fernet.generate_key().decode()
KEY_2 = Fernet.generate_key().decode()
ADMIN = "admin-token-for-config-tests"


def test_a_missing_master_key_is_a_clear_error() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({})
    assert "BACKEND_SECRETS_MASTER_KEYS" in str(caught.value)


@pytest.mark.parametrize("raw", ["", "   ", ",", " , "])
def test_an_empty_master_key_is_a_clear_error(raw: str) -> None:
    with pytest.raises(ConfigError, match="BACKEND_SECRETS_MASTER_KEYS"):
        Settings.from_env({"BACKEND_SECRETS_MASTER_KEYS": raw})


@pytest.mark.parametrize(
    "raw",
    [
        "not-a-fernet-key-but-a-secret-looking-string",
        KEY[:-2],  # truncated
        "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTI=",  # valid base64 of 31 bytes
        f"{KEY},oops-a-typo-in-the-second-key",
    ],
)
def test_a_malformed_master_key_is_a_clear_error_that_does_not_echo_it(raw: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"BACKEND_SECRETS_MASTER_KEYS": raw})
    message = str(caught.value)
    assert "BACKEND_SECRETS_MASTER_KEYS" in message and "Fernet" in message
    for part in raw.split(","):
        assert part not in message


def test_several_master_keys_keep_their_order() -> None:
    settings = Settings.from_env({"BACKEND_SECRETS_MASTER_KEYS": f" {KEY} , {KEY_2} "})
    assert [k.reveal() for k in settings.master_keys] == [KEY, KEY_2]


def test_defaults_are_the_contracts() -> None:
    settings = Settings.from_env({"BACKEND_SECRETS_MASTER_KEYS": KEY})
    assert settings.db_path == Path("data/backend-secrets.db")
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.admin_token is None
    assert settings.stream_prefix == "backend-secrets"


def test_every_setting_is_read_from_the_environment(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "BACKEND_SECRETS_MASTER_KEYS": KEY,
            "BACKEND_SECRETS_DB": str(tmp_path / "x.db"),
            "REDIS_URL": "redis://10.0.0.1:6380/2",
            "BACKEND_SECRETS_ADMIN_TOKEN": ADMIN,
            "BACKEND_SECRETS_HOST": "0.0.0.0",
            "BACKEND_SECRETS_PORT": "9000",
            "BACKEND_SECRETS_STREAM_PREFIX": "tenant-a",
        }
    )
    assert settings.db_path == tmp_path / "x.db"
    assert settings.redis_url == "redis://10.0.0.1:6380/2"
    assert settings.admin_token is not None and settings.admin_token.reveal() == ADMIN
    assert (settings.host, settings.port, settings.stream_prefix) == ("0.0.0.0", 9000, "tenant-a")


def test_a_malformed_port_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="BACKEND_SECRETS_PORT"):
        Settings.from_env({"BACKEND_SECRETS_MASTER_KEYS": KEY, "BACKEND_SECRETS_PORT": "eighty"})


def test_secrets_can_come_from_files(tmp_path: Path) -> None:
    (tmp_path / "master").write_text(f"{KEY},{KEY_2}\n")
    (tmp_path / "admin").write_text(ADMIN + "\n")
    (tmp_path / "redis").write_text("redis://redis:6379/0\n")
    settings = Settings.from_env(
        {
            "BACKEND_SECRETS_MASTER_KEYS_FILE": str(tmp_path / "master"),
            "BACKEND_SECRETS_ADMIN_TOKEN_FILE": str(tmp_path / "admin"),
            "REDIS_URL_FILE": str(tmp_path / "redis"),
        }
    )
    assert [k.reveal() for k in settings.master_keys] == [KEY, KEY_2]
    assert settings.admin_token is not None and settings.admin_token.reveal() == ADMIN
    assert settings.redis_url == "redis://redis:6379/0"


def test_an_unreadable_file_is_a_clear_error_naming_the_variable(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-file"
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"BACKEND_SECRETS_MASTER_KEYS_FILE": str(missing)})
    assert "BACKEND_SECRETS_MASTER_KEYS_FILE" in str(caught.value) and str(missing) in str(caught.value)


def test_a_file_with_a_malformed_key_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "master").write_text("garbage\n")
    with pytest.raises(ConfigError, match="not a Fernet key"):
        Settings.from_env({"BACKEND_SECRETS_MASTER_KEYS_FILE": str(tmp_path / "master")})


def test_read_env_falls_back_to_the_file_then_to_the_default(tmp_path: Path) -> None:
    assert read_env({}, "X", "default") == "default"
    (tmp_path / "x").write_text("from-file")
    assert read_env({"X_FILE": str(tmp_path / "x")}, "X", "default") == "from-file"


def test_the_settings_repr_hides_every_secret() -> None:
    settings = Settings.from_env(
        {"BACKEND_SECRETS_MASTER_KEYS": f"{KEY},{KEY_2}", "BACKEND_SECRETS_ADMIN_TOKEN": ADMIN}
    )
    for text in (repr(settings), str(settings), f"{settings}", repr(settings.master_keys)):
        assert KEY not in text and KEY_2 not in text and ADMIN not in text
    assert "**" in repr(settings)


def test_a_secret_reveals_only_on_request() -> None:
    secret = Secret("hunter2")
    assert "hunter2" not in repr(secret) and "hunter2" not in str(secret) and "hunter2" not in f"{secret!s}"
    assert secret.reveal() == "hunter2"


def test_worker_settings_from_the_environment() -> None:
    settings = WorkerSettings.from_env(
        {
            "REDIS_URL": "redis://r:1/0",
            "BACKEND_SECRETS_API_URL": "http://api:8080/",
            "BACKEND_SECRETS_STREAM_PREFIX": "t",
            "BACKEND_SECRETS_EXECUTION_CACHE_TTL_S": "2.5",
        }
    )
    assert (settings.redis_url, settings.api_url, settings.stream_prefix) == ("redis://r:1/0", "http://api:8080", "t")
    assert settings.execution_cache_ttl_s == 2.5


def test_worker_defaults_are_the_contracts() -> None:
    settings = WorkerSettings.from_env({})
    assert settings.api_url == "http://127.0.0.1:8080"
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.execution_cache_ttl_s == 30.0


def test_the_worker_never_holds_the_master_key() -> None:
    settings = WorkerSettings.from_env({"BACKEND_SECRETS_MASTER_KEYS": KEY, "BACKEND_SECRETS_ADMIN_TOKEN": ADMIN})
    assert KEY not in repr(settings) and ADMIN not in repr(settings)
    assert not any("master" in name or "admin" in name for name in settings.__dataclass_fields__)


def test_a_malformed_worker_ttl_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="BACKEND_SECRETS_EXECUTION_CACHE_TTL_S"):
        WorkerSettings.from_env({"BACKEND_SECRETS_EXECUTION_CACHE_TTL_S": "soon"})
