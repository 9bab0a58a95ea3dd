"""Execution grants: 32 random bytes each, URL-safe, never repeated (also across refills of the
randomness read ahead from the OS)."""

import base64
import os
import re

import pytest

from contract.executions import GRANT_PREFIX
from service import dispatch
from service.dispatch import mint_grant


def test_grants_are_32_random_url_safe_bytes_and_never_repeat() -> None:
    grants = [mint_grant() for _ in range(1000)]  # about 8 refills of the 4 KiB read ahead
    assert len(set(grants)) == len(grants)
    for grant in grants:
        assert grant.startswith(GRANT_PREFIX)
        body = grant.removeprefix(GRANT_PREFIX)
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", body)
        assert len(base64.urlsafe_b64decode(body + "=")) == 32


def test_grants_take_consecutive_bytes_never_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the OS's randomness replaced by a counter, each grant is the next 32 bytes of it."""
    stream = bytes(range(256)) * 64  # what the OS would hand out, in order
    reads: list[int] = []

    def counting_urandom(size: int) -> bytes:
        start = sum(reads)
        reads.append(size)
        return stream[start % len(stream) :][:size]

    monkeypatch.setattr(dispatch.os, "urandom", counting_urandom)
    dispatch._grant_randomness.forget()
    taken = [base64.urlsafe_b64decode(mint_grant().removeprefix(GRANT_PREFIX) + "=") for _ in range(200)]
    assert b"".join(taken) == stream[: 200 * 32]  # consecutive, no byte twice, none skipped
    assert reads == [4096, 4096]  # 128 grants per read


def test_a_forked_child_does_not_reuse_its_parents_read_ahead() -> None:
    mint_grant()  # something is read ahead
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child mints one grant and sends it
        os.write(write, mint_grant().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    childs = os.read(read, 1024).decode()
    os.close(read)
    assert childs != mint_grant()
