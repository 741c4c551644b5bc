"""The socket every service listens on (`bind_socket`): connections accepted by asyncio get TCP_NODELAY."""

from __future__ import annotations

import asyncio
import socket

from hubpulse.platform.stores import free_port
from hubpulse_common.service import bind_socket


async def test_accepted_connections_have_nodelay() -> None:
    # Without TCP_NODELAY, a response written in two parts (head, then body) waited for the client's delayed
    # ACK: ~40 ms on every call to a service on plain asyncio (the deployer's predict, measured).
    accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    listening = bind_socket("127.0.0.1", free_port())
    server = await asyncio.start_server(on_connection, sock=listening)
    try:
        _, writer = await asyncio.open_connection(*listening.getsockname())
        assert await asyncio.wait_for(accepted, 10) != 0
        writer.close()
    finally:
        server.close()
        await server.wait_closed()
