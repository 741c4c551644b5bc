"""The deploy stack on free ports: replay Hub (demo models, Spaces), auth, deployer and the real gateway app,
against the session's PostgreSQL, Kafka, MongoDB and S3 fixtures."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from auth.conftest import serving
from conftest import Store, fresh_database
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hubpulse.hub import create_app as create_hub_app
from hubpulse.hub.demo_models import DemoRepos
from hubpulse_auth.app import create_app as create_auth_app
from hubpulse_auth.settings import AuthSettings
from hubpulse_common.synthetic import SyntheticHub
from hubpulse_deployer.app import create_app as create_deployer_app
from hubpulse_deployer.http_server import Handler, HttpServer, Limits
from hubpulse_deployer.model_server import ModelServer
from hubpulse_deployer.settings import DeployerSettings
from hubpulse_gateway.app import create_app as create_gateway_app
from hubpulse_gateway.settings import GatewaySettings


async def until(condition: Callable[[], bool]) -> None:
    """Polls `condition` every 10 ms for up to 5 s."""
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("waited 5 s in vain")


@contextlib.asynccontextmanager
async def serving_http(handler: Handler, limits: Limits | None = None) -> AsyncIterator[HttpServer]:
    """The model server's HTTP on a free port of this test's loop."""
    http = HttpServer(handler, limits or Limits())
    await http.start("127.0.0.1", 0)
    try:
        yield http
    finally:
        await http.close(5)


@contextlib.asynccontextmanager
async def model_client(server: ModelServer) -> AsyncIterator[httpx.AsyncClient]:
    """A client of this model server, over a real socket, as its callers reach it."""
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(server.close)
        http = await stack.enter_async_context(serving_http(server.respond))
        yield await stack.enter_async_context(httpx.AsyncClient(base_url=f"http://127.0.0.1:{http.port}", timeout=30))


# A stable folder, so the demo models are generated once per machine, not once per run.
DEMO_CACHE = Path.home() / ".cache" / "hubpulse-tests" / "demo-models"
# The Hub tokens the test Hub knows: the platform's (the deployer's HUBPULSE_HF_TOKEN) and a user's own.
PLATFORM_TOKEN = "hf_platform_test"
USER_TOKEN = "hf_user_test"
# A private repo, readable only with USER_TOKEN (or the platform's, which may not deploy it): the demo classifier
PRIVATE_MODEL = "acme/private-classifier"
_MIRRORED = "hubpulse-demo/tiny-text-classifier"


class RealHubAccess:
    """What huggingface.co does with tokens and private repos, in front of the replay Hub: a token it does not know
    is answered 401 even on a public repo; PRIVATE_MODEL answers 401 RepoNotFound without a token that can read it
    and, with one, the demo classifier's files under `"private": true`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = dict(scope["headers"]).get(b"authorization", b"").decode()
        token = header.removeprefix("Bearer ").strip() or None
        if token is not None and token not in (PLATFORM_TOKEN, USER_TOKEN):
            await JSONResponse({"error": "Invalid credentials in Authorization header"}, 401)(scope, receive, send)
            return
        if PRIVATE_MODEL not in scope["path"]:
            await self.app(scope, receive, send)
            return
        if token is None:
            headers = {"x-error-code": "RepoNotFound"}
            await JSONResponse({"error": "Repository not found"}, 401, headers=headers)(scope, receive, send)
            return
        path = scope["path"].replace(PRIVATE_MODEL, _MIRRORED)
        # the repo's info says it is private; its files are the mirrored repo's as they are
        reply = _privately(send) if path.startswith("/api/models/") else send
        await self.app({**scope, "path": path, "raw_path": path.encode()}, receive, reply)


def _privately(send: Send) -> Send:
    """Rewrites the mirrored repo's info: its id and `"private": true` (bodies are small; buffered whole)."""
    start: dict[str, Any] = {}
    body = bytearray()

    async def rewrite(message: Message) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
            return
        body.extend(message.get("body", b""))
        if message.get("more_body"):
            return
        data = bytes(body)
        if b'"private":false' in data:
            data = data.replace(b'"private":false', b'"private":true').replace(
                _MIRRORED.encode(), PRIVATE_MODEL.encode()
            )
        headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
        await send({**start, "headers": [*headers, (b"content-length", str(len(data)).encode())]})
        await send({"type": "http.response.body", "body": data})

    return rewrite


@dataclass
class DeployStack:
    gateway: str
    deployer: str
    hub: str
    kafka: str
    headers: dict[str, str]
    user_id: str
    settings: DeployerSettings

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.gateway, headers=self.headers, timeout=60)

    async def wait_status(self, deployment_id: str, wanted: set[str], timeout_s: float = 90) -> dict[str, Any]:
        async with self.client() as client:
            deadline = asyncio.get_running_loop().time() + timeout_s
            while True:
                body: dict[str, Any] = (await client.get(f"/v1/deployments/{deployment_id}")).json()
                if body["status"] in wanted or asyncio.get_running_loop().time() > deadline:
                    return body
                await asyncio.sleep(0.2)


async def read_topic(
    bootstrap: str, topic: str, match: Callable[[dict[str, Any]], bool], want: int, timeout_s: float = 20
) -> list[dict[str, Any]]:
    """Values of `topic` (from the start) that `match`, until `want` of them arrived or the time is up."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",  # no group: its join would wait half a session on the embedded broker
        enable_auto_commit=False,
    )
    await consumer.start()
    found: list[dict[str, Any]] = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while len(found) < want and asyncio.get_running_loop().time() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                found.extend(v for r in records if match(v := json.loads(r.value)))
    finally:
        await consumer.stop()
    return found


@pytest.fixture(scope="module")
async def deploy_stack(
    postgres: Store, kafka: Store, mongo: Store, s3: Store, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[DeployStack]:
    common: dict[str, Any] = {
        "kafka_bootstrap": kafka.url,
        "mongo_url": mongo.url,
        "s3_endpoint": s3.url,
        "environment": "test",
        "mongo_database": f"deploy_{uuid.uuid4().hex[:8]}",
        # gateway and deployer on one machine: the gateway calls local model servers itself (dataplane.py)
        "model_server_secret": uuid.uuid4().hex,
    }
    hub = create_hub_app(SyntheticHub(20, 3, seed=3))
    hub.state.demo_repos = DemoRepos(DEMO_CACHE)
    hub.state.space_build_seconds = 0.5
    hub.add_middleware(RealHubAccess)
    auth_db = await fresh_database(postgres, "deploy_auth")
    async with serving(hub) as hub_url:
        auth_settings = AuthSettings(database_url=auth_db, environment="test")
        async with serving(create_auth_app(auth_settings)) as auth_url:
            settings = DeployerSettings(
                **common,
                hf_endpoint=hub_url,
                hf_token=PLATFORM_TOKEN,
                data_dir=tmp_path_factory.mktemp("deployer"),
                auth_url=auth_url,
                # moto serves Lambda and IAM at the S3 server's address; the deployer is told so explicitly
                lambda_endpoint=s3.url,
                iam_endpoint=s3.url,
                aws_access_key_id="deployer",
                aws_secret_access_key="x",
                provision_timeout_s=90,
                resource_poll_s=0.5,
            )
            async with serving(create_deployer_app(settings)) as deployer_url:
                gateway_db = await fresh_database(postgres, "deploy_gateway")
                gateway = GatewaySettings(
                    **common,
                    database_url=gateway_db,
                    auth_url=auth_url,
                    deployer_url=deployer_url,
                    upstream_timeout_s=30,
                    api_rate_limit="100000/minute",
                )
                async with serving(create_gateway_app(gateway)) as gateway_url:
                    async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as client:
                        creds = {"email": "deployer@example.com", "password": "correct horse battery"}
                        await client.post("/v1/auth/signup", json=creds)
                        login = (await client.post("/v1/auth/login", json=creds)).json()
                        headers = {"authorization": f"Bearer {login['access_token']}"}
                        me = (await client.get("/v1/me", headers=headers)).json()
                    yield DeployStack(
                        gateway_url,
                        deployer_url,
                        hub_url,
                        kafka.url,
                        headers,
                        str(me.get("id") or me.get("user_id")),
                        settings,
                    )
