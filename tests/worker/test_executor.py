"""The executor renders each node's config when it starts, reads secrets through the execution,
and records only masked text."""

import base64
import json
from collections.abc import AsyncIterator

import aiohttp
import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.fernet import Fernet

from contract.engine import EngineCredential, EngineSecret, EngineSnapshot
from contract.executions import ExecutionInput, ExecutionResult
from contract.sealing import seal
from contract.workflows import Workflow
from worker.context import ExecutionContext
from worker.executor import Execution
from worker.snapshots import SnapshotCache

KEY = Fernet.generate_key()
TOKEN_VALUE = "internal-token-6f1c9a"


class Store:
    """A project's secrets as the engine endpoint would serve them, changeable by the test."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.credentials: dict[str, tuple[str, dict[str, str]]] = {}
        self.previous: dict[str, tuple[str, float]] = {}
        self.revision = 0

    def put(self, name: str, value: str) -> None:
        self.values[name] = value
        self.revision += 1

    async def fetch(self, project: str, token: str) -> EngineSnapshot:
        fernet = Fernet(KEY)
        secrets = [
            EngineSecret(name=n, version=1, ciphertext=seal(fernet, project, "secret", n, v).decode())
            for n, v in self.values.items()
        ]
        secrets = [self._with_previous(fernet, project, s) for s in secrets]
        credentials = [
            EngineCredential(name=n, type=t, version=1,
                             ciphertext=seal(fernet, project, "credential", n, json.dumps(f)).decode())
            for n, (t, f) in self.credentials.items()
        ]  # fmt: skip
        return EngineSnapshot(
            project=project, revision=self.revision, data_key=KEY.decode(), secrets=secrets, credentials=credentials
        )

    def _with_previous(self, fernet: Fernet, project: str, secret: EngineSecret) -> EngineSecret:
        if secret.name not in self.previous:
            return secret
        value, until = self.previous[secret.name]
        old = seal(fernet, project, "secret", secret.name, value).decode()
        return msgspec.structs.replace(secret, previous_ciphertext=old, previous_valid_until=until)


@pytest.fixture
async def echo() -> AsyncIterator[TestServer]:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"authorization": request.headers.get("Authorization")})

    app = web.Application()
    app.router.add_route("*", "/echo", handler)
    server = TestServer(app)
    await server.start_server()
    yield server
    await server.close()


async def run_workflow(
    store: Store, nodes: list[dict[str, object]], data: ExecutionInput | None = None
) -> ExecutionResult:
    cache = SnapshotCache(store.fetch, max_projects=10, miss_refresh_interval_s=0)
    cache.trusted = True
    ctx = ExecutionContext(cache, "shop", "grant", ttl_s=30)
    workflow = msgspec.convert({"nodes": nodes}, Workflow)
    async with aiohttp.ClientSession() as session:
        return await Execution(ctx, workflow, data or ExecutionInput(), session).run()


async def test_outbound_request_carries_the_value_but_the_record_is_masked(echo: TestServer) -> None:
    store = Store()
    store.put("API_TOKEN", TOKEN_VALUE)
    node = {
        "id": "call",
        "type": "http_request",
        "config": {"url": str(echo.make_url("/echo")), "headers": {"Authorization": "Bearer ${ secrets.API_TOKEN }"}},
    }
    result = await run_workflow(store, [node])
    assert result.status == "succeeded"
    assert result.nodes[0].output["json"] == {"authorization": "Bearer ***"}
    assert TOKEN_VALUE not in json.dumps(msgspec.to_builtins(result))


async def test_missing_secret_fails_with_its_name() -> None:
    node = {"id": "r", "type": "respond", "config": {"body": "${ secrets.NOPE }"}}
    result = await run_workflow(Store(), [node])
    assert result.status == "failed"
    assert result.error is not None and result.error.code == "secret_not_found"
    assert "NOPE" in result.error.message


async def test_single_expression_keeps_json_type_and_nodes_chain() -> None:
    nodes = [
        {"id": "calc", "type": "javascript_code", "config": {"code": "return {n: ctx.input.body.n + 1};"}},
        {"id": "out", "type": "respond", "config": {"status": 201, "body": {"n": "${ nodes.calc.output.n }"}}},
    ]
    result = await run_workflow(Store(), nodes, ExecutionInput(body={"n": 41}))
    assert result.response is not None
    assert (result.response.status, result.response.body) == (201, {"n": 42})


async def test_a_change_between_nodes_is_seen_by_the_next_node() -> None:
    store = Store()
    store.put("K", "old-value-1")
    cache = SnapshotCache(store.fetch, max_projects=10, miss_refresh_interval_s=0)
    cache.trusted = True
    ctx = ExecutionContext(cache, "shop", "grant", ttl_s=30)
    assert await ctx.secrets.get("K") == "old-value-1"
    store.put("K", "new-value-2")
    cache.invalidate("shop", store.revision)  # what the listener does when the event arrives
    assert await ctx.secrets.get("K") == "new-value-2"
    assert ctx.secrets.K == "new-value-2"


async def test_code_node_with_a_secret_reference_is_refused() -> None:
    node = {"id": "js", "type": "javascript_code", "config": {"code": "return 1", "env_vars": {"X": "${ secrets.K }"}}}
    result = await run_workflow(Store(), [node])
    assert result.error is not None and result.error.code == "secrets_not_allowed_in_code_node"


async def test_http_request_with_a_credential_gets_the_auth_header_and_the_record_is_masked(echo: TestServer) -> None:
    store = Store()
    store.credentials["STRIPE"] = ("stripe", {"secret_key": "sk_test_" + "a1" * 12})
    store.credentials["BASIC"] = ("http_basic", {"username": "robot", "password": "pw-" + "z9" * 8})
    nodes = [
        {"id": "a", "type": "http_request", "config": {"url": str(echo.make_url("/echo")), "credential": "STRIPE"}},
        {"id": "b", "type": "http_request", "config": {"url": str(echo.make_url("/echo")), "credential": "BASIC"}},
    ]
    result = await run_workflow(store, nodes)
    assert result.status == "succeeded", result.error
    assert result.nodes[0].output["json"] == {"authorization": "Bearer ***"}
    assert result.nodes[1].output["json"] == {"authorization": "Basic ***"}
    assert [(r.name, r.kind) for r in result.reads] == [("STRIPE", "credential"), ("BASIC", "credential")]
    dumped = json.dumps(msgspec.to_builtins(result))
    assert "a1a1" not in dumped and "z9z9" not in dumped


async def test_a_missing_credential_fails_with_its_name(echo: TestServer) -> None:
    node = {"id": "a", "type": "http_request", "config": {"url": str(echo.make_url("/echo")), "credential": "NOPE"}}
    result = await run_workflow(Store(), [node])
    assert result.error is not None and (result.error.code, result.error.node_id) == ("credential_not_found", "a")
    assert "NOPE" in result.error.message


async def test_the_previous_signing_key_passes_only_within_its_window() -> None:
    import hashlib
    import hmac
    import time

    body = b'{"id":"evt"}'
    t = int(time.time())
    signature = hmac.new(b"whsec_old", f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    data = ExecutionInput(
        headers={"stripe-signature": f"t={t},v1={signature}"}, raw_body=base64.b64encode(body).decode()
    )
    node = {"id": "v", "type": "verify_webhook", "config": {"scheme": "stripe", "secret": "${ secrets.SIGNING }"}}
    store = Store()
    store.put("SIGNING", "whsec_new")
    store.previous["SIGNING"] = ("whsec_old", time.time() + 60)
    assert (await run_workflow(store, [node], data)).status == "succeeded"
    store.previous["SIGNING"] = ("whsec_old", time.time() - 1)
    failed = await run_workflow(store, [node], data)
    assert failed.error is not None and failed.error.code == "invalid_signature"


async def test_reads_are_recorded_per_node_without_values() -> None:
    store = Store()
    store.put("A", "value-a-123")
    nodes = [
        {"id": "one", "type": "respond", "config": {"body": "${ secrets.A }"}},
        {"id": "two", "type": "respond", "config": {"body": "${ secrets.A }-again"}},
    ]
    result = await run_workflow(store, nodes)
    assert [(r.node_id, r.name) for r in result.reads] == [("one", "A")]
    assert "value-a-123" not in json.dumps(msgspec.to_builtins(result))


async def test_code_with_js_template_literals_runs() -> None:
    code = "const who = ctx.input.body.who; return `hello ${who}`;"
    node = {"id": "js", "type": "javascript_code", "config": {"code": code}}
    result = await run_workflow(Store(), [node], ExecutionInput(body={"who": "you"}))
    assert (result.status, result.output) == ("succeeded", "hello you")


async def test_a_verified_webhook_reply_is_masked_in_every_form_and_the_rest_kept() -> None:
    import hashlib
    import hmac
    import time
    from urllib.parse import quote

    key = "whsec_a/b+c=d " + "5e" * 12
    body = b'{"id":"evt_1","type":"payment_intent.succeeded"}'
    t = int(time.time())
    signature = hmac.new(key.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    data = ExecutionInput(
        headers={"stripe-signature": f"t={t},v1={signature}"}, raw_body=base64.b64encode(body).decode()
    )
    forms = [base64.b64encode(key.encode()).decode(), quote(key, safe=""), json.dumps(key)]
    reply = {"received": True, "echo": "${ secrets.SIGNING }", "forms": forms, "note": "ok", "n": [1, None]}
    nodes = [
        {"id": "verify", "type": "verify_webhook", "config": {"scheme": "stripe", "secret": "${ secrets.SIGNING }"}},
        {"id": "reply", "type": "respond", "config": {"status": 200, "body": reply}},
    ]
    store = Store()
    store.put("SIGNING", key)
    result = await run_workflow(store, nodes, data)
    assert result.status == "succeeded", result.error
    assert result.nodes[0].output == {"verified": True, "scheme": "stripe", "timestamp": t}
    assert result.response is not None and result.response.body == {
        "received": True, "echo": "***", "forms": ["***", "***", '"***"'], "note": "ok", "n": [1, None],
    }  # fmt: skip
    assert "5e5e" not in json.dumps(msgspec.to_builtins(result))
