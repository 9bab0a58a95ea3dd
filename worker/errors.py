"""Errors an execution can end with; each has a stable code. Messages name secrets, never values."""


class EngineError(Exception):
    code = "engine_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SecretNotFound(EngineError):
    code = "secret_not_found"

    def __init__(self, name: str) -> None:
        super().__init__(f"secret {name!r} is not set in this project")
        self.name = name


class CredentialNotFound(EngineError):
    code = "credential_not_found"

    def __init__(self, name: str) -> None:
        super().__init__(f"credential {name!r} is not set in this project")
        self.name = name


class SecretUndecryptable(EngineError):
    code = "secret_undecryptable"


class SnapshotUnavailable(EngineError):
    """The engine endpoint could not be reached or refused the grant."""

    code = "secrets_unavailable"


class SecretsNotLoaded(EngineError):
    """Synchronous `ctx.secrets.NAME` while the project's snapshot is being refreshed."""

    code = "secrets_not_loaded"
