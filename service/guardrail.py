"""The Frontend (Build) vars guardrail: public values must not be private keys.

Two checks. `private_key_kind` recognises well-known private key formats by their shape;
an exact copy of a private store's value is found by the store through keyed fingerprints
(service.fingerprints). Either refusal is a 422 `looks_like_secret` that names what was
recognised, never the value, and says where the value belongs instead.
"""

import re

from service.errors import InvalidField

# Prefixes start at a boundary so that e.g. "desk_live_x" is not taken for a Stripe key.
# Public keys (Stripe pk_live_/pk_test_) deliberately pass: they are meant for the browser.
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("a Stripe secret key (sk_live_/sk_test_)", re.compile(r"(?<![A-Za-z0-9])sk_(?:live|test)_")),
    ("a Stripe restricted key (rk_live_/rk_test_)", re.compile(r"(?<![A-Za-z0-9])rk_(?:live|test)_")),
    ("a webhook signing secret (whsec_)", re.compile(r"(?<![A-Za-z0-9])whsec_")),
    ("a Slack token (xoxb-/xoxp-)", re.compile(r"(?<![A-Za-z0-9])xox[bpar]-")),
    ("a PEM private key", re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")),
    ("an OpenAI secret key (sk-)", re.compile(r"(?<![A-Za-z0-9])sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}")),
    ("a GitHub token (ghp_/github_pat_)", re.compile(r"(?<![A-Za-z0-9])(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_)")),
)

_WHERE = (
    "Frontend (Build) vars are public: they are baked into the browser bundle. "
    "Store it as a Backend Secret, or as a Credential if it belongs to an integration, and read it at runtime."
)


def private_key_kind(value: str) -> str | None:
    """What private key format `value` contains, if any."""
    for kind, pattern in _PATTERNS:
        if pattern.search(value):
            return kind
    return None


def looks_like_secret(what: str) -> InvalidField:
    return InvalidField(f"This value looks like {what}. {_WHERE}", code="looks_like_secret")


def check_not_private_key(value: str) -> None:
    kind = private_key_kind(value)
    if kind is not None:
        raise looks_like_secret(kind)
