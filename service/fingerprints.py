"""Keyed fingerprints of private values, so "is this an exact copy?" needs no decryption.

A private store (Backend Secrets today, Credentials later) stores, beside each ciphertext,
HMAC-SHA256(fingerprint key, value). The fingerprint key is derived with HKDF from the project's
own key, so a fingerprint is useless without that key: it cannot be brute-forced from a stolen
database, it differs between projects, and crypto-shredding a project key shreds it too.

The fingerprint depends on the project key: rotating that key must recompute the stored
fingerprints (rotation decrypts every value anyway), or copies stop being recognised.
"""

import base64
import hashlib
import hmac
from collections.abc import Callable
from functools import lru_cache

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from service.keyring import KeyRing

_INFO = b"backend-secrets/value-fingerprint/v1"

Fingerprinter = Callable[[bytes], bytes]  # wrapped project key -> fingerprint of one value under it


@lru_cache(maxsize=4096)
def fingerprint_key(project_key: bytes) -> bytes:
    """The per-project fingerprint key, derived from the project's (unwrapped) Fernet key."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO)
    return hkdf.derive(base64.urlsafe_b64decode(project_key))


def fingerprint(key: bytes, value: str) -> bytes:
    return hmac.new(key, value.encode("utf-8"), hashlib.sha256).digest()


def fingerprinter(keyring: KeyRing, value: str) -> Fingerprinter:
    """A function that fingerprints `value` under whichever wrapped project key the store holds.

    Stores call it inside their write transaction with the key they read there, so a key that
    changed between the request and the write is the one used.
    """

    def under(wrapped_key: bytes) -> bytes:
        return fingerprint(fingerprint_key(keyring.unwrap(wrapped_key)), value)

    return under
