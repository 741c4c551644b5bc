"""Our servers keep an idle connection open longer than our clients keep one pooled: a request is never sent on a
connection the server is closing at that instant (a dropped POST is not retried)."""

from __future__ import annotations

import asyncio

import pytest
import uvicorn
from fastapi import FastAPI

from hubpulse_common.service import CLIENT_KEEPALIVE_S, SERVER_KEEPALIVE_S, server_options
from hubpulse_common.settings import ServiceSettings
from hubpulse_deployer.http_server import KEEP_ALIVE_S
from hubpulse_gateway.http1 import MAX_IDLE_S


def test_every_server_outlasts_every_client_pool() -> None:
    assert server_options(ServiceSettings())["timeout_keep_alive"] == SERVER_KEEPALIVE_S
    assert SERVER_KEEPALIVE_S > CLIENT_KEEPALIVE_S > MAX_IDLE_S
    assert KEEP_ALIVE_S == SERVER_KEEPALIVE_S


@pytest.mark.timeout(60)
async def test_a_service_answers_on_a_connection_idle_past_uvicorns_default() -> None:
    """Idle 6 s (uvicorn's default would have closed it at 5) and still answered on the same socket."""
    app = FastAPI()

    @app.post("/ping")
    async def ping() -> dict[str, bool]:
        return {"ok": True}

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, **server_options(ServiceSettings())))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    request = b"POST /ping HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n"
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)

        async def answered() -> bool:
            writer.write(request)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            await reader.readexactly(int(head.split(b"content-length: ")[1].split(b"\r\n")[0]))
            return head.startswith(b"HTTP/1.1 200")

        assert await answered()
        await asyncio.sleep(6)
        assert await answered()  # a closed connection: IncompleteReadError
        writer.close()
    finally:
        server.should_exit = True
        await task
