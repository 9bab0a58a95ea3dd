"""Execution grants: 32 random bytes each, URL-safe, never repeated (also across refills of the
randomness read ahead from the OS)."""

import base64
import re

from contract.executions import GRANT_PREFIX
from service.dispatch import mint_grant


def test_grants_are_32_random_url_safe_bytes_and_never_repeat() -> None:
    grants = [mint_grant() for _ in range(1000)]  # about 8 refills of the 4 KiB read ahead
    assert len(set(grants)) == len(grants)
    for grant in grants:
        assert grant.startswith(GRANT_PREFIX)
        body = grant.removeprefix(GRANT_PREFIX)
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", body)
        assert len(base64.urlsafe_b64decode(body + "=")) == 32
