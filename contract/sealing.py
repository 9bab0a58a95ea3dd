"""The sealed-value format shared by the service (which seals) and the worker (which opens).

A value is sealed with Fernet under its project's key. The plaintext inside the token starts
with a header naming the project, the store and the name, so a token copied to another row,
store or project fails to open instead of yielding a value in the wrong place.
"""

from cryptography.fernet import Fernet, InvalidToken

_MAGIC = b"bs1"
_SEP = b"\x00"  # cannot occur in project ids, store names or value names


class SealError(Exception):
    """A token that does not open, or opens to a value bound elsewhere. Never carries the value."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _header(project: str, store: str, name: str) -> bytes:
    return _SEP.join((_MAGIC, project.encode(), store.encode(), name.encode(), b""))


def seal(fernet: Fernet, project: str, store: str, name: str, value: str) -> bytes:
    return fernet.encrypt(_header(project, store, name) + value.encode("utf-8"))


def open_sealed(
    fernet: Fernet,
    token: bytes | str,
    project: str,
    store: str,
    name: str,
    *,
    ttl_at: tuple[int, int] | None = None,
) -> str:
    """Decrypt and check the binding; `ttl_at` (ttl, now) checks token age, as the Fernet spec's vectors do."""
    try:
        plaintext = fernet.decrypt(token) if ttl_at is None else fernet.decrypt_at_time(token, *ttl_at)
    except (InvalidToken, TypeError, ValueError):
        raise SealError("undecryptable", f"the stored value of {store} {name!r} cannot be decrypted") from None
    header = _header(project, store, name)
    if not plaintext.startswith(header):
        raise SealError("binding_mismatch", f"the stored value of {store} {name!r} belongs to another record")
    return plaintext[len(header) :].decode("utf-8")
