"""verify_webhook against signatures made the way Stripe and generic HMAC senders make them."""

import base64
import hashlib
import hmac
import time

import aiohttp
import pytest

from contract.executions import ExecutionInput
from contract.workflows import VerifyWebhookConfig
from worker.nodes import NodeFailed, NodeRun
from worker.nodes.verify_webhook import run

SECRET = "whsec_test_signing_key"
BODY = b'{"id":"evt_1","type":"payment_intent.succeeded"}'


def stripe_header(secret: str, body: bytes, at: int | None = None, extra_v1: str | None = None) -> str:
    t = int(time.time()) if at is None else at
    signature = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    parts = [f"t={t}", f"v1={signature}"] + ([f"v1={extra_v1}"] if extra_v1 else [])
    return ",".join(parts)


def state(headers: dict[str, str], body: bytes, session: aiohttp.ClientSession) -> NodeRun:
    data = ExecutionInput(headers=headers, raw_body=base64.b64encode(body).decode())
    return NodeRun(input=data, raw_body=body, http=session)


@pytest.fixture
async def session() -> aiohttp.ClientSession:
    async with aiohttp.ClientSession() as client:
        yield client


async def test_stripe_signature_passes(session: aiohttp.ClientSession) -> None:
    config = VerifyWebhookConfig(scheme="stripe", secret=SECRET)
    output = await run(config, state({"stripe-signature": stripe_header(SECRET, BODY)}, BODY, session))
    assert output["verified"] is True


async def test_stripe_accepts_any_of_several_v1(session: aiohttp.ClientSession) -> None:
    header = stripe_header(SECRET, BODY, extra_v1="00" * 32).replace("v1=", "v1=" + "ab" * 32 + ",v1=", 1)
    config = VerifyWebhookConfig(scheme="stripe", secret=SECRET)
    assert (await run(config, state({"stripe-signature": header}, BODY, session)))["verified"]


@pytest.mark.parametrize(
    ("header", "why"),
    [
        (stripe_header("whsec_other", BODY), "wrong key"),
        (stripe_header(SECRET, BODY + b" "), "body changed"),
        (stripe_header(SECRET, BODY, at=int(time.time()) - 301), "too old"),
        ("t=abc,v1=00", "malformed"),
    ],
)
async def test_stripe_refuses(session: aiohttp.ClientSession, header: str, why: str) -> None:
    config = VerifyWebhookConfig(scheme="stripe", secret=SECRET)
    with pytest.raises(NodeFailed) as failed:
        await run(config, state({"stripe-signature": header}, BODY, session))
    assert (failed.value.code, failed.value.http_status) == ("invalid_signature", 400), why
    assert SECRET not in failed.value.message


async def test_previous_secret_passes_during_overlap(session: aiohttp.ClientSession) -> None:
    config = VerifyWebhookConfig(scheme="stripe", secret="whsec_new")
    headers = {"stripe-signature": stripe_header("whsec_old", BODY)}
    assert (await run(config, state(headers, BODY, session), previous_secrets=["whsec_old"]))["verified"]


@pytest.mark.parametrize("encoding", ["hex", "base64"])
async def test_hmac_sha256_in_named_header(session: aiohttp.ClientSession, encoding: str) -> None:
    digest = hmac.new(SECRET.encode(), BODY, hashlib.sha256).digest()
    signature = digest.hex() if encoding == "hex" else base64.b64encode(digest).decode()
    config = VerifyWebhookConfig(scheme="hmac_sha256", secret=SECRET, header="X-Hub-Signature-256", encoding=encoding)
    assert (await run(config, state({"x-hub-signature-256": signature}, BODY, session)))["verified"]
    with pytest.raises(NodeFailed):
        await run(config, state({"x-hub-signature-256": signature}, BODY + b"x", session))


async def test_missing_header_is_invalid_signature(session: aiohttp.ClientSession) -> None:
    with pytest.raises(NodeFailed) as failed:
        await run(VerifyWebhookConfig(scheme="stripe", secret=SECRET), state({}, BODY, session))
    assert failed.value.code == "invalid_signature"
