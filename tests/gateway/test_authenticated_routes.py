"""The authenticated routes through the real gateway, with real auth, deployer and metrics services behind it:
two organisations never see each other's deployment metrics or usage, and schemathesis finds no 5xx on any
authenticated route with a logged-in user (security audit: the fuzzing covered only the 3 catalog routes)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import uuid
from asyncio.subprocess import PIPE
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from auth.conftest import raw_post, serving
from conftest import Store, fresh_database
from websockets.exceptions import ConnectionClosed

from hubpulse.hub import create_app as create_hub_app
from hubpulse_auth.app import create_app as create_auth_app
from hubpulse_auth.settings import AuthSettings
from hubpulse_common.events import DeploymentEvent, DeploymentStatus, InferenceEvent
from hubpulse_common.kafka import EventBus
from hubpulse_common.synthetic import SyntheticHub
from hubpulse_deployer.app import create_app as create_deployer_app
from hubpulse_deployer.settings import DeployerSettings
from hubpulse_gateway.app import create_app as create_gateway_app
from hubpulse_gateway.settings import GatewaySettings
from hubpulse_metrics.app import create_app as create_metrics_app
from hubpulse_metrics.settings import MetricsSettings

PASSWORD = "correct horse battery"
# Public or browser-only routes, fuzzed elsewhere or redirects to the Hub: not what this file covers.
SKIPPED = ("/v1/models", "/v1/picks", "/v1/auth/hf/", "/docs", "/openapi.json")


@dataclass
class FullStack:
    gateway: str
    kafka: str

    async def login(self, email: str, **extra: Any) -> dict[str, str]:
        async with httpx.AsyncClient(base_url=self.gateway, timeout=30) as client:
            await client.post("/v1/auth/signup", json={"email": email, "password": PASSWORD})
            login = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD, **extra})
            assert login.status_code == 200, login.text
        return {"authorization": f"Bearer {login.json()['access_token']}"}

    async def me(self, headers: dict[str, str]) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=self.gateway, timeout=30) as client:
            body: dict[str, Any] = (await client.get("/v1/me", headers=headers)).json()
        return body


@pytest.fixture(scope="module")
async def full_stack(
    postgres: Store, kafka: Store, mongo: Store, s3: Store, tmp_path_factory: Any
) -> AsyncIterator[FullStack]:
    common: dict[str, Any] = {
        "kafka_bootstrap": kafka.url,
        "mongo_url": mongo.url,
        "s3_endpoint": s3.url,
        "environment": "test",
        "mongo_database": f"full_{uuid.uuid4().hex[:8]}",
    }
    auth_db = await fresh_database(postgres, "full_auth")
    gateway_db = await fresh_database(postgres, "full_gateway")
    # API-key tokens live 3 s here, so a live socket's re-authentication is seen within a test
    auth_app = create_auth_app(AuthSettings(database_url=auth_db, environment="test", api_key_token_ttl_s=3))
    async with serving(create_hub_app(SyntheticHub(20, 3, seed=5))) as hub_url, serving(auth_app) as auth_url:
        deployer = DeployerSettings(
            **common, hf_endpoint=hub_url, data_dir=tmp_path_factory.mktemp("full-deployer"), auth_url=auth_url
        )
        metrics = MetricsSettings(**common, auth_url=auth_url, consumer_group=f"full-{uuid.uuid4().hex[:8]}")
        async with (
            serving(create_deployer_app(deployer)) as deployer_url,
            serving(create_metrics_app(metrics)) as metrics_url,
        ):
            gateway = GatewaySettings(
                **common,
                database_url=gateway_db,
                auth_url=auth_url,
                deployer_url=deployer_url,
                metrics_url=metrics_url,
                api_rate_limit="100000/minute",
                auth_ip_rate_limit="100000/minute",
            )
            async with serving(create_gateway_app(gateway)) as gateway_url:
                yield FullStack(gateway_url, kafka.url)


async def _publish_deployment(stack: FullStack, user_id: str, org_id: str, calls: int) -> str:
    dep = f"dep-{uuid.uuid4().hex[:12]}"
    bus = EventBus(stack.kafka, client_id="full-stack-tests")
    await bus.start()
    try:
        await bus.publish(
            DeploymentEvent(
                deployment_id=dep,
                sequence=0,
                model_id="m",
                target="local",
                status=DeploymentStatus.RUNNING,
                version=1,
                user_id=user_id,
                org_id=org_id,
            )
        )
        call = {"deployment_id": dep, "model_id": "m", "user_id": user_id, "org_id": org_id, "status": "ok"}
        await bus.publish_many(
            InferenceEvent.model_validate(
                {
                    **call,
                    "http_status": 200,
                    "latency_ms": 5.0,
                    "inputs": 1,
                    "request_bytes": 10,
                    "response_bytes": 10,
                    "occurred_at": datetime.now(UTC),
                }
            )
            for _ in range(calls)
        )
    finally:
        await bus.stop()
    return dep


async def test_two_organisations_never_see_each_others_metrics_or_usage(full_stack: FullStack) -> None:
    alice = await full_stack.login("alice-org@example.com")
    bob = await full_stack.login("bob-org@example.com")
    a, b = await full_stack.me(alice), await full_stack.me(bob)
    assert a["org_id"] != b["org_id"]
    dep = await _publish_deployment(full_stack, a["id"], a["org_id"], calls=4)
    async with httpx.AsyncClient(base_url=full_stack.gateway, timeout=30) as client:
        for _ in range(150):
            own = await client.get(f"/v1/metrics/deployments/{dep}", headers=alice)
            if own.status_code == 200 and own.json()["summary"]["requests"] == 4 and own.json()["state"]:
                break
            await asyncio.sleep(0.1)
        assert own.json()["state"]["status"] == "running", own.text
        foreign = await client.get(f"/v1/metrics/deployments/{dep}", headers=bob)
        assert foreign.status_code == 404, foreign.text  # audit M11: 200 with the deployment's state
        usage = await client.get("/v1/usage", params={"group_by": "deployment"}, headers=bob)
        assert usage.status_code == 200
        assert dep not in [row["key"] for row in usage.json()["rows"]]
        # the per-minute roll-ups that usage reads are written after the raw calls the summary counts
        for _ in range(150):
            mine = await client.get("/v1/usage", params={"group_by": "deployment"}, headers=alice)
            if dep in [row["key"] for row in mine.json()["rows"]]:
                break
            await asyncio.sleep(0.1)
        assert {row["key"]: row["requests"] for row in mine.json()["rows"]}[dep] == 4
        extreme = await client.get("/v1/usage", params={"until": "0001-01-01T00:10:00Z"}, headers=alice)
        assert extreme.status_code == 422, extreme.text  # audit M9: 502
    # audit M9: a 17 MiB env value went all the way to Mongo (502)
    status, body, _ = await raw_post(
        full_stack.gateway,
        "/v1/deployments",
        f"{next(iter(alice))}: {alice['authorization']}\r\ncontent-length: {17 << 20}\r\n",
        17,
    )
    assert status == 413
    assert body["error"]["code"] == "payload_too_large"


async def _fuzz(base_url: str, document: dict[str, Any], headers: dict[str, str]) -> list[str]:
    """Schemathesis over every authenticated operation (bounded examples each, `support.fuzz`, in a process of its
    own); the failures, all of them."""
    operations = [
        (path, method.upper())
        for path, methods in document["paths"].items()
        if not path.startswith(SKIPPED)
        for method in methods
    ]
    assert ("/v1/deployments/{deployment_id}", "DELETE") in operations
    request = {"base_url": base_url, "document": document, "headers": headers, "operations": operations}
    tests = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tests), os.environ.get("PYTHONPATH")]))}
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "support.fuzz", stdin=PIPE, stdout=PIPE, stderr=PIPE, env=env
    )
    out, err = await worker.communicate(json.dumps(request).encode())
    assert worker.returncode == 0, err.decode()[-4000:]
    failures: list[str] = json.loads(out)
    return failures


async def test_authenticated_routes_fuzz_clean(full_stack: FullStack) -> None:
    headers = await full_stack.login("fuzzer@example.com")
    async with httpx.AsyncClient(timeout=30) as client:
        document = (await client.get(full_stack.gateway + "/openapi.json")).raise_for_status().json()
    # the services run on this event loop: the (blocking) fuzzer runs beside it
    failures = await _fuzz(full_stack.gateway, document, headers)
    assert not failures, "\n\n".join(failures)


async def test_live_socket_checks_origin_and_ends_with_its_credential(full_stack: FullStack) -> None:
    ws_url = full_stack.gateway.replace("http", "ws") + "/v1/live/metrics"
    await full_stack.login("socket@example.com")  # signs up
    async with httpx.AsyncClient(base_url=full_stack.gateway, timeout=30) as client:
        login = await client.post(
            "/v1/auth/login", json={"email": "socket@example.com", "password": PASSWORD, "session": True}
        )
        cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
    headers = await full_stack.login("socket@example.com")
    async with httpx.AsyncClient(base_url=full_stack.gateway, timeout=30) as client:
        key = (await client.post("/v1/api-keys", json={"name": "live"}, headers=headers)).json()
    assert login.status_code == 200
    # a cookie session from another site's page (cross-site WebSocket hijacking): refused
    async with websockets.connect(ws_url, additional_headers={"cookie": cookie}, origin="http://evil.example") as ws:
        refused = json.loads(await asyncio.wait_for(ws.recv(), 10))
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
    assert refused["error"]["code"] == "forbidden"
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1008
    async with websockets.connect(ws_url, additional_headers={"cookie": cookie}, origin=full_stack.gateway) as ws:
        assert "deployments" in json.loads(await asyncio.wait_for(ws.recv(), 10))
    # an API key's socket is re-authenticated when its token expires: revoked meanwhile, the socket closes
    async with websockets.connect(ws_url, additional_headers={"x-api-key": key["key"]}) as ws:
        assert "deployments" in json.loads(await asyncio.wait_for(ws.recv(), 10))
        async with httpx.AsyncClient(base_url=full_stack.gateway, timeout=30) as client:
            assert (await client.delete(f"/v1/api-keys/{key['id']}", headers=headers)).status_code == 204
        messages = [json.loads(m) for m in await _until_closed(ws)]
    assert messages[-1]["error"]["code"] == "token_expired"
    assert ws.close_code == 4001


async def _until_closed(ws: websockets.ClientConnection) -> list[str | bytes]:
    """The socket's messages until the server closes it (within 30 s)."""
    messages: list[str | bytes] = []
    with contextlib.suppress(ConnectionClosed):
        async with asyncio.timeout(30):
            async for message in ws:
                messages.append(message)
    return messages
