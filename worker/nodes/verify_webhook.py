"""verify_webhook: check a provider's signature over the raw body, or end with 400 invalid_signature."""

import base64
import binascii
import hashlib
import hmac
import time
from typing import Any

from contract.workflows import VerifyWebhookConfig
from worker.nodes.base import NodeFailed, NodeRun

STRIPE_HEADER = "stripe-signature"
DEFAULT_HMAC_HEADER = "x-signature"


def _invalid(reason: str) -> NodeFailed:
    return NodeFailed("invalid_signature", f"the webhook signature is invalid: {reason}", http_status=400)


def _digest(secret: str, payload: bytes) -> bytes:
    return hmac.new(secret.encode("utf-8"), payload, hashlib.sha256).digest()


def parse_stripe_header(header: str) -> tuple[int, list[str]]:
    """`t=…,v1=…,v1=…` -> (timestamp, v1 signatures); other schemes (v0) are ignored, as Stripe says."""
    pairs = [item.split("=", 1) for item in header.split(",") if "=" in item]
    timestamps = [value.strip() for key, value in pairs if key.strip() == "t"]
    signatures = [value.strip() for key, value in pairs if key.strip() == "v1"]
    if len(timestamps) != 1 or not timestamps[0].isdigit() or not signatures:
        raise _invalid("the Stripe-Signature header is malformed")
    return int(timestamps[0]), signatures


def verify_stripe(secrets: list[str], header: str, raw_body: bytes, tolerance_s: int, now: float) -> int:
    timestamp, signatures = parse_stripe_header(header)
    if tolerance_s > 0 and abs(now - timestamp) > tolerance_s:
        raise _invalid(f"the timestamp is outside the {tolerance_s} s tolerance")
    signed = f"{timestamp}.".encode() + raw_body
    expected = [_digest(secret, signed).hex() for secret in secrets]
    if not any(hmac.compare_digest(e, s) for e in expected for s in signatures):
        raise _invalid("no v1 signature matches")
    return timestamp


def _decode_signature(text: str, encoding: str) -> bytes:
    text = text.strip().removeprefix("sha256=")
    try:
        return bytes.fromhex(text) if encoding == "hex" else base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error):
        raise _invalid(f"the signature is not {encoding}") from None


def verify_hmac(secrets: list[str], header: str, raw_body: bytes, encoding: str) -> None:
    given = _decode_signature(header, encoding)
    if not any(hmac.compare_digest(_digest(secret, raw_body), given) for secret in secrets):
        raise _invalid("the HMAC does not match")


async def run(config: VerifyWebhookConfig, state: NodeRun, previous_secrets: list[str] | None = None) -> Any:
    """`previous_secrets`: values still valid during a signing-key rotation's overlap window."""
    secrets = [config.secret, *(previous_secrets or [])]
    default_header = STRIPE_HEADER if config.scheme == "stripe" else DEFAULT_HMAC_HEADER
    header_name = (config.header or default_header).lower()
    header = state.input.headers.get(header_name)
    if header is None:
        raise _invalid(f"the {header_name} header is missing")
    if config.scheme == "stripe":
        timestamp = verify_stripe(secrets, header, state.raw_body, config.tolerance_s, time.time())
        return {"verified": True, "scheme": "stripe", "timestamp": timestamp}
    verify_hmac(secrets, header, state.raw_body, config.encoding)
    return {"verified": True, "scheme": "hmac_sha256"}
