"""Shred keys: one random key per project, kept OUTSIDE the database, destroyed when the project is.

Why: a project key is stored in the database wrapped by the master keys. Deleting the row is not
enough, because a copy of the database taken before (a backup, a snapshot, a stolen file) still
holds the wrapped key, and the master keys still unwrap it. So each project key is wrapped twice
(service.keyring): first by the project's shred key, then by the master keys. The shred key lives
in this keystore, a folder of small files beside (not inside) the database. Deleting a project
overwrites and unlinks its file first; from then on no copy of the database can yield the
project's values, whatever master keys it is paired with.

What this guarantees and what it does not (README, "Crypto-shredding"):
- a database copy from any time + the master keys + the keystore as it is now: nothing;
- a copy of the KEYSTORE taken before the delete still opens that project's values in a database
  copy of the same age. Back the keystore up separately, with a retention no longer than you promise
  for deletions (or not at all: losing the keystore loses every project);
- the file is overwritten in place before it is unlinked, which erases it on ordinary filesystems;
  copy-on-write filesystems, SSD wear-levelling and filesystem snapshots may keep the old blocks.

A file holds nothing but the key (44 url-safe base64 bytes), mode 0600, in a folder of mode 0700,
named by a random id that says nothing about its project.
"""

import os
import re
import secrets as random
from pathlib import Path

from cryptography.fernet import Fernet

_ID = re.compile(r"[0-9a-f]{32}")


class ShredKeyMissing(Exception):
    """The project's shred key is gone: the project was deleted (or the keystore is not this database's)."""


class Keystore:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def __repr__(self) -> str:
        return f"Keystore({str(self.folder)!r})"

    def create(self) -> tuple[str, bytes]:
        """A new shred key, durably written before it is returned: (its id, the key)."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        shred_id, key = random.token_hex(16), Fernet.generate_key()
        temporary = self.folder / f".{shred_id}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, key)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, self._path(shred_id))
        self._sync_folder()
        return shred_id, key

    def load(self, shred_id: str) -> bytes:
        try:
            return self._path(shred_id).read_bytes()
        except FileNotFoundError:
            raise ShredKeyMissing(f"shred key {shred_id} is not in the keystore at {self.folder}") from None

    def exists(self, shred_id: str) -> bool:
        return self._path(shred_id).exists()

    def destroy(self, shred_id: str) -> bool:
        """Overwrite the key file with random bytes, flush it to disk, unlink it. False if it was not there."""
        path = self._path(shred_id)
        try:
            fd = os.open(path, os.O_WRONLY)
        except FileNotFoundError:
            return False
        try:
            size = os.fstat(fd).st_size
            os.write(fd, random.token_bytes(max(size, 64)))
            os.fsync(fd)
        finally:
            os.close(fd)
        path.unlink()
        self._sync_folder()
        return True

    def _path(self, shred_id: str) -> Path:
        if _ID.fullmatch(shred_id) is None:  # never a path from outside: ids are ours, 32 hex digits
            raise ShredKeyMissing("not a shred key id")
        return self.folder / shred_id

    def _sync_folder(self) -> None:
        fd = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
