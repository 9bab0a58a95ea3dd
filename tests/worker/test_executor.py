"""The executor renders each node's config when it starts, reads secrets through the execution,
and records only masked text."""

import json
from collections.abc import AsyncIterator

import aiohttp
import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.fernet import Fernet

from contract.engine import EngineSecret, EngineSnapshot
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
        return EngineSnapshot(project=project, revision=self.revision, data_key=KEY.decode(), secrets=secrets)


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
