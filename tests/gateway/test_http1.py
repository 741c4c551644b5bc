"""The data plane's HTTP/1.1 client (http1.py) against the model server's HTTP and against servers that misbehave."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from deployer.conftest import serving_http, until

from hubpulse_deployer.http_server import Answer, Limits, Pending, Request
from hubpulse_gateway.http1 import AnswerLost, ConnectFailed, Http1Pool

Raw = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def echo(request: Request) -> Answer:
    return Answer(200, request.method + b" " + request.path.encode() + b" " + request.authorization + request.body)


@pytest.fixture
async def pool() -> AsyncIterator[Http1Pool]:
    client = Http1Pool(timeout_s=0.5, connect_timeout_s=2)
    yield client
    await client.aclose()


async def raw_server(handle: Raw) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def test_calls_share_a_keep_alive_connection(pool: Http1Pool) -> None:
    async with serving_http(echo) as http:
        url = f"http://127.0.0.1:{http.port}"
        answers = [await pool.post(url, "/predict", b"body %d" % i, b"authorization: Bearer t\r\n") for i in range(3)]
        assert answers == [(200, b"POST /predict Bearer tbody %d" % i) for i in range(3)]
        assert len(http.connections) == 1
        # sixteen at once: sixteen connections, then all of them reused
        await asyncio.gather(*(pool.post(url, "/p", b"") for _ in range(16)))
        await asyncio.gather(*(pool.post(url, "/p", b"") for _ in range(16)))
        assert len(http.connections) == 16


async def test_a_url_with_a_path_prefix_and_a_refused_connection(pool: Http1Pool) -> None:
    async with serving_http(echo) as http:
        assert await pool.post(f"http://127.0.0.1:{http.port}/base/", "/predict", b"") == (200, b"POST /base/predict ")
        port = http.port
    with pytest.raises(ConnectFailed):
        await pool.post(f"http://127.0.0.1:{port}", "/predict", b"")
    with pytest.raises(ConnectFailed, match="only http"):
        await pool.post(f"https://127.0.0.1:{port}", "/predict", b"")


async def test_a_stale_or_closed_connection_is_not_reused() -> None:
    """The server closes idle connections (its keep-alive); the client's own limit is shorter, and a connection
    the server closed is never used again."""
    client = Http1Pool(timeout_s=2, connect_timeout_s=2, max_idle_s=0.1)
    try:
        async with serving_http(echo, Limits(keep_alive_s=0.3)) as http:
            url = f"http://127.0.0.1:{http.port}"
            await client.post(url, "/a", b"")
            await asyncio.sleep(0.2)  # idle longer than the client keeps a connection
            await client.post(url, "/b", b"")
            await asyncio.sleep(1.6)  # the server's sweep closed it
            assert not http.connections
            assert await client.post(url, "/c", b"") == (200, b"POST /c ")
    finally:
        await client.aclose()


async def test_an_answer_that_does_not_come_is_lost_after_the_timeout(pool: Http1Pool) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1000)
        await asyncio.sleep(5)
        writer.close()

    server, url = await raw_server(silent)
    async with server:
        started = time.monotonic()
        with pytest.raises(AnswerLost, match="no answer within"):
            await pool.post(url, "/predict", b"x")
        assert 0.4 < time.monotonic() - started < 2.5


@pytest.mark.parametrize(
    "reply",
    [b"", b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort", b"NOT HTTP\r\n\r\n"],
    ids=["closed", "cut short", "not http"],
)
async def test_a_server_that_closes_or_garbles_mid_answer_loses_the_call(pool: Http1Pool, reply: bytes) -> None:
    async def abrupt(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1000)
        writer.write(reply)
        writer.close()

    server, url = await raw_server(abrupt)
    async with server:
        with pytest.raises(AnswerLost):
            await pool.post(url, "/predict", b"x")


async def test_chunked_answers_and_connection_close(pool: Http1Pool) -> None:
    connections = 0

    async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await reader.readuntil(b"\r\n\r\nx")
        writer.write(b"HTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n")
        writer.write(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
        await writer.drain()
        writer.close()

    server, url = await raw_server(chunked)
    async with server:
        assert await pool.post(url, "/predict", b"x") == (201, b"abcde")
        assert await pool.post(url, "/predict", b"x") == (201, b"abcde")  # a new connection: the last one closed
    assert connections == 2


async def test_a_cancelled_call_s_late_answer_never_reaches_the_next_call(pool: Http1Pool) -> None:
    held: list[asyncio.Future[bytes]] = []

    def slow_first(request: Request) -> Answer | Pending:
        if request.body != b"first":
            return Answer(200, request.body)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        held.append(future)
        return Pending(future, lambda f: Answer(200, b"late answer to first"))

    async with serving_http(slow_first) as http:
        url = f"http://127.0.0.1:{http.port}"
        call = asyncio.create_task(pool.post(url, "/p", b"first"))
        while not held:
            await asyncio.sleep(0.01)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        held[0].set_result(b"")
        assert await pool.post(url, "/p", b"second") == (200, b"second")


async def test_calls_beyond_the_connection_bound_wait_for_a_free_one() -> None:
    """A burst queues on `max_connections` sockets; a call that cannot get one within the connect timeout is not
    sent."""
    held: list[asyncio.Future[bytes]] = []

    def holding(request: Request) -> Answer | Pending:
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        held.append(future)
        return Pending(future, lambda f: Answer(200, request.body))

    client = Http1Pool(timeout_s=5, connect_timeout_s=0.3, max_connections=2)
    try:
        async with serving_http(holding) as http:
            url = f"http://127.0.0.1:{http.port}"
            calls = [asyncio.create_task(client.post(url, "/p", b"%d" % i)) for i in range(4)]
            await until(lambda: len(held) == 2)
            assert len(http.connections) == 2  # two sent, two waiting
            for future in held:
                future.set_result(b"")
            await until(lambda: len(held) == 4)  # the waiting two went out as the first two ended
            for future in held[2:]:
                future.set_result(b"")
            assert sorted(await asyncio.gather(*calls)) == [(200, b"%d" % i) for i in range(4)]
            assert len(http.connections) == 2  # the waiting calls went out on the same two connections
            # both connections busy for longer than the connect timeout: the next call is refused unsent
            busy = [asyncio.create_task(client.post(url, "/p", b"busy")) for _ in range(2)]
            await until(lambda: len(held) == 6)
            with pytest.raises(ConnectFailed, match="no free connection"):
                await client.post(url, "/p", b"late")
            for task in busy:
                task.cancel()
            await asyncio.gather(*busy, return_exceptions=True)
    finally:
        await client.aclose()


async def test_idle_connections_are_closed_and_unused_addresses_forgotten() -> None:
    """Deployments come and go: a pool that only ever grew would keep every old model server's connections."""
    client = Http1Pool(timeout_s=0.4, connect_timeout_s=2, max_idle_s=0.1)
    try:
        async with serving_http(echo) as http:  # the server's own keep-alive is 5 s
            await client.post(f"http://127.0.0.1:{http.port}", "/p", b"")
            assert len(http.connections) == 1
            await until(lambda: not http.connections)  # closed by the client's sweep, well before 5 s
            assert not client._addresses
    finally:
        await client.aclose()
