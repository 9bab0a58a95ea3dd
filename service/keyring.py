"""Master keys and project keys: each project's Fernet key is stored wrapped, never in clear.

Two layers, outermost first:
- the master keys (MultiFernet): the first wraps, every listed key unwraps, so a master key is
  rotated by putting the new one first, re-wrapping (`backend-secrets keys rewrap`, which only
  touches this layer) and then removing the old one;
- the project's shred key (service.keystore), kept outside the database: deleting the project
  destroys it, and with it every copy of the project key, backups included.

Stored form: `bs-shred1:<shred id>:<master token of (shred token of the project key)>`. A project
key stored before shred keys existed is a bare master token (`legacy`); `keys rewrap` upgrades it.
"""

from functools import lru_cache
from typing import Final

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from contract.config import Secret
from service.errors import ApiError
from service.keystore import Keystore, ShredKeyMissing

SHRED_PREFIX: Final = b"bs-shred1:"


class KeyUnavailable(ApiError):
    """A project key that the configured master keys (or the keystore) cannot unwrap: an operator's
    problem (a master key missing from the list, a lost keystore), answered with a clear error."""

    status, code = 500, "project_key_unavailable"


class KeyRing:
    def __init__(self, master_keys: tuple[Secret, ...], keystore: Keystore | None = None) -> None:
        self._master = MultiFernet([Fernet(key.reveal()) for key in master_keys])
        self._first = Fernet(master_keys[0].reveal())
        self.keystore = keystore
        self.unwrap = lru_cache(maxsize=4096)(self._unwrap)

    def __repr__(self) -> str:
        return "KeyRing(<hidden>)"

    def new_project_key(self) -> tuple[bytes, bytes]:
        """A fresh project key, returned as (key, the key wrapped for storage)."""
        key = Fernet.generate_key()
        return key, self.wrap(key)

    def wrap(self, key: bytes, like: bytes | None = None) -> bytes:
        """Wrap `key` under the shred key of the stored key `like` (same project), else under a new one."""
        if self.keystore is None:
            return self._master.encrypt(key)
        shred_id = shred_id_of(like) if like is not None else None
        if shred_id is None:
            shred_id, shred_key = self.keystore.create()
        else:
            shred_key = self._shred_key(shred_id)
        return _shredded(shred_id, self._master.encrypt(Fernet(shred_key).encrypt(key)))

    def _unwrap(self, wrapped: bytes) -> bytes:
        shred_id, outer = split_wrapped(wrapped)
        try:
            inner = self._master.decrypt(outer)
        except InvalidToken:
            raise KeyUnavailable("no configured master key unwraps this project key") from None
        if shred_id is None:
            return inner
        try:
            return Fernet(self._shred_key(shred_id)).decrypt(inner)
        except InvalidToken:
            raise KeyUnavailable("the project's shred key does not unwrap its project key") from None

    def _shred_key(self, shred_id: str) -> bytes:
        if self.keystore is None:
            raise KeyUnavailable("this project key needs a keystore (BACKEND_SECRETS_KEYSTORE)")
        try:
            return self.keystore.load(shred_id)
        except ShredKeyMissing:
            raise KeyUnavailable("the project's shred key has been destroyed") from None

    def project_fernet(self, wrapped: bytes) -> Fernet:
        return _fernet(self.unwrap(wrapped))

    def is_current(self, wrapped: bytes) -> bool:
        """Already in the form `rewrap` produces: the first master key alone opens it (and it has a shred
        key, when there is a keystore to hold one)."""
        shred_id, outer = split_wrapped(wrapped)
        if shred_id is None and self.keystore is not None:
            return False
        try:
            self._first.decrypt(outer)
        except InvalidToken:
            return False
        return True

    def rewrap(self, wrapped: bytes) -> bytes:
        """The same project key under the first master key; a legacy key also gets a shred key."""
        shred_id, outer = split_wrapped(wrapped)
        if shred_id is None and self.keystore is not None:
            return self.wrap(self.unwrap(wrapped))
        try:
            rotated = self._master.rotate(outer)
        except InvalidToken:
            raise KeyUnavailable("no configured master key unwraps this project key") from None
        return rotated if shred_id is None else _shredded(shred_id, rotated)

    def forget(self) -> None:
        """Drop every unwrapped key this process remembers (after a project is shredded)."""
        self.unwrap.cache_clear()
        _fernet.cache_clear()


def split_wrapped(wrapped: bytes) -> tuple[str | None, bytes]:
    """(shred id or None for a legacy key, the master-key token)."""
    if not wrapped.startswith(SHRED_PREFIX):
        return None, wrapped
    shred_id, _, outer = wrapped[len(SHRED_PREFIX) :].partition(b":")
    return shred_id.decode("ascii", "replace"), outer


def shred_id_of(wrapped: bytes) -> str | None:
    return split_wrapped(wrapped)[0]


def _shredded(shred_id: str, outer: bytes) -> bytes:
    return SHRED_PREFIX + shred_id.encode("ascii") + b":" + outer


@lru_cache(maxsize=4096)
def _fernet(key: bytes) -> Fernet:
    return Fernet(key)
