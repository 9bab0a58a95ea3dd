"""Master keys and project keys: each project's Fernet key is stored wrapped by the master keys.

MultiFernet: the first master key wraps new project keys, every listed key unwraps, so a
master key can be rotated by adding the new one first and re-wrapping.
"""

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from contract.config import Secret


class KeyUnavailable(Exception):
    """A project key that no configured master key unwraps."""


class KeyRing:
    def __init__(self, master_keys: tuple[Secret, ...]) -> None:
        self._master = MultiFernet([Fernet(key.reveal()) for key in master_keys])
        self.unwrap = lru_cache(maxsize=4096)(self._unwrap)

    def __repr__(self) -> str:
        return "KeyRing(<hidden>)"

    def new_project_key(self) -> tuple[bytes, bytes]:
        """A fresh project key, returned as (key, the key wrapped for storage)."""
        key = Fernet.generate_key()
        return key, self._master.encrypt(key)

    def _unwrap(self, wrapped: bytes) -> bytes:
        try:
            return self._master.decrypt(wrapped)
        except InvalidToken:
            raise KeyUnavailable("no configured master key unwraps this project key") from None

    def project_fernet(self, wrapped: bytes) -> Fernet:
        return _fernet(self.unwrap(wrapped))

    def rewrap(self, wrapped: bytes) -> bytes:
        return self._master.rotate(wrapped)


@lru_cache(maxsize=4096)
def _fernet(key: bytes) -> Fernet:
    return Fernet(key)
