"""Service settings, read from the environment once into a frozen object whose repr hides secrets."""

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet

from contract.config import ConfigError, Secret, current_environ, read_env, read_float, read_int
from contract.streams import DEFAULT_PREFIX

MASTER_KEYS = "BACKEND_SECRETS_MASTER_KEYS"


@dataclass(frozen=True, slots=True)
class Settings:
    master_keys: tuple[Secret, ...]
    db_path: Path = Path("data/backend-secrets.db")
    redis_url: str = "redis://127.0.0.1:6379/0"
    admin_token: Secret | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    stream_prefix: str = DEFAULT_PREFIX
    events_maxlen: int = 100_000
    max_body_bytes: int = 512 * 1024
    sqlite_busy_timeout_ms: int = 5_000
    hook_timeout_s: float = 30.0
    executions_keep: int = 1_000  # per project; 0 keeps every execution
    executions_max_age_s: float = 30 * 86_400  # 0 keeps executions of any age
    executions_maxlen: int = 100_000  # approximate length bound of the executions stream
    grant_grace_s: float = 10.0  # an execution's grant outlives its deadline by this much
    keystore_dir: Path | None = None  # the shred keys (service.keystore); None: beside the database

    @property
    def keystore(self) -> Path:
        """Where the projects' shred keys live: BACKEND_SECRETS_KEYSTORE, else `<db stem>-keystore/` beside the DB."""
        return self.keystore_dir or self.db_path.with_name(f"{self.db_path.stem}-keystore")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        env = current_environ() if environ is None else environ
        admin = read_env(env, "BACKEND_SECRETS_ADMIN_TOKEN")
        return cls(
            master_keys=parse_master_keys(read_env(env, MASTER_KEYS)),
            db_path=Path(read_env(env, "BACKEND_SECRETS_DB", "data/backend-secrets.db") or ""),
            redis_url=read_env(env, "REDIS_URL", "redis://127.0.0.1:6379/0") or "",
            admin_token=Secret(admin) if admin else None,
            host=read_env(env, "BACKEND_SECRETS_HOST", "127.0.0.1") or "127.0.0.1",
            port=read_int(env, "BACKEND_SECRETS_PORT", 8080),
            stream_prefix=read_env(env, "BACKEND_SECRETS_STREAM_PREFIX", DEFAULT_PREFIX) or DEFAULT_PREFIX,
            events_maxlen=read_int(env, "BACKEND_SECRETS_EVENTS_MAXLEN", 100_000),
            sqlite_busy_timeout_ms=read_int(env, "BACKEND_SECRETS_SQLITE_BUSY_MS", 5_000),
            hook_timeout_s=read_float(env, "BACKEND_SECRETS_HOOK_TIMEOUT_S", 30.0),
            executions_keep=read_int(env, "BACKEND_SECRETS_EXECUTIONS_KEEP", 1_000),
            executions_max_age_s=read_float(env, "BACKEND_SECRETS_EXECUTIONS_MAX_AGE_S", 30 * 86_400),
            keystore_dir=Path(keystore) if (keystore := read_env(env, "BACKEND_SECRETS_KEYSTORE")) else None,
        )


def parse_master_keys(raw: str | None) -> tuple[Secret, ...]:
    """Comma-separated Fernet keys; the first wraps new project keys, all of them unwrap."""
    if not raw or not raw.replace(",", "").strip():  # "," alone lists no key
        raise ConfigError(
            f"{MASTER_KEYS} (or {MASTER_KEYS}_FILE) is required: comma-separated Fernet keys. "
            "Generate one with: python -c "
            "'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
        )
    keys = [part.strip() for part in raw.split(",") if part.strip()]
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            raise ConfigError(
                f"{MASTER_KEYS}: key #{position} is not a Fernet key (32 url-safe base64-encoded bytes)"
            ) from None
    return tuple(Secret(key) for key in keys)
