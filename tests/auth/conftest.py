"""The auth service, a gateway with the security layer, and the replay Hub's OpenID provider, served by uvicorn
on free ports against the PostgreSQL fixture."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
import uvicorn
from conftest import Store, fresh_database
from fastapi import FastAPI

from hubpulse.hub.app import synthetic_app
from hubpulse.platform.stores import free_port
from hubpulse_auth.app import create_app as create_auth_app
from hubpulse_auth.keys import KeyRing
from hubpulse_auth.settings import AuthSettings
from hubpulse_common.db import create_pool
from hubpulse_common.http import create_service_app
from hubpulse_gateway.app import install_security
from hubpulse_gateway.deps import GATEWAY_STATE, GatewayState
from hubpulse_gateway.errors import HTTP_ERRORS
from hubpulse_gateway.security import Security
from hubpulse_gateway.settings import GatewaySettings
from hubpulse_gateway.upstream import open_upstreams


@asynccontextmanager
async def serving(app: FastAPI, port: int | None = None) -> AsyncIterator[str]:
    """`app` on `port` (default: a free one) until the block ends; yields its base URL."""
    port = port or free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", proxy_headers=False)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def raw_post(base_url: str, path: str, headers: str, body_chunks: int) -> tuple[int, dict[str, Any], float]:
    """POST over a bare socket: the headers, then up to `body_chunks` MiB of body, stopping when the answer comes.
    (status, JSON body, seconds to the answer)."""
    host, port = urlsplit(base_url).netloc.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    start = time.monotonic()
    writer.write(f"POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n{headers}\r\n".encode())
    answer = asyncio.create_task(reader.read(65536))
    for _ in range(body_chunks):
        if answer.done():
            break
        writer.write(b"1" * (1024 * 1024) if "chunked" not in headers else b"100000\r\n" + b"1" * 0x100000 + b"\r\n")
        try:
            await writer.drain()
        except ConnectionError:
            break
        await asyncio.sleep(0.01)
    raw = await asyncio.wait_for(answer, 10)
    elapsed = time.monotonic() - start
    writer.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    return status, json.loads(payload[payload.index(b"{") : payload.rindex(b"}") + 1]), elapsed


def security_gateway(auth_url: str, **overrides: Any) -> FastAPI:
    """The gateway's security layer as `create_app` installs it, without the catalog stores and the bus."""
    settings = GatewaySettings(auth_url=auth_url, jwks_min_refresh_s=0, **overrides)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_upstreams(settings) as upstreams:
            GATEWAY_STATE.set(app, GatewayState(upstreams, Security(settings, upstreams), catalog=None, bus=None))
            try:
                yield
            finally:
                await close_limiter()

    app = create_service_app(service="gateway", title="gateway", lifespan=lifespan, errors=HTTP_ERRORS)
    close_limiter = install_security(app, settings)
    return app


PASSWORD = "correct horse battery"  # a test account's password


@dataclass
class Stack:
    gateway: str
    auth: str
    hub: str
    auth_settings: AuthSettings
    pool: asyncpg.Pool

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.gateway, timeout=10, **kwargs)

    def keyring(self) -> KeyRing:
        return KeyRing(self.pool, self.auth_settings)

    async def user(self, email: str, password: str = PASSWORD, **login: Any) -> dict[str, Any]:
        """Sign up (if new) and log in; the login answer plus the bearer header."""
        async with self.client() as client:
            await client.post("/v1/auth/signup", json={"email": email, "password": password})
            response = await client.post("/v1/auth/login", json={"email": email, "password": password, **login})
            assert response.status_code == 200, response.text
            tokens: dict[str, Any] = response.json()
        return {**tokens, "headers": {"authorization": f"Bearer {tokens['access_token']}"}}


@pytest.fixture(scope="module")
async def stack(postgres: Store) -> AsyncIterator[Stack]:
    database_url = await fresh_database(postgres, "auth_stack")
    hub = synthetic_app(5, 2)
    async with serving(hub) as hub_url:
        gateway_port = free_port()
        auth_settings = AuthSettings(
            database_url=database_url,
            environment="test",
            login_rate_limit="5/minute",
            hf_issuer=hub_url,
            hf_client_id="hubpulse-test",
            hf_redirect_uri=f"http://127.0.0.1:{gateway_port}/v1/auth/hf/callback",
        )
        async with (
            serving(create_auth_app(auth_settings)) as auth_url,
            # the module's tests sign many users up from one address: the per-IP sign-in budget has its own test
            serving(security_gateway(auth_url, auth_ip_rate_limit="1000/minute"), gateway_port) as gateway_url,
        ):
            pool = await create_pool(database_url, max_size=2)
            try:
                yield Stack(gateway_url, auth_url, hub_url, auth_settings, pool)
            finally:
                await pool.close()
