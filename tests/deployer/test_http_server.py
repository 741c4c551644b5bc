"""The model server's HTTP/1.1 (http_server.py) over real sockets: what uvicorn did for it, it must still do."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from deployer.conftest import serving_http, until
from hubpulse_deployer.http_server import Answer, Handler, HttpServer, Limits, Pending, Request


class Echo:
    """Answers `<method> <path>?<query> <body>` at once; a body of `later` waits for `release`."""

    def __init__(self) -> None:
        self.held: list[asyncio.Future[bytes]] = []
        self.answered: list[str] = []

    def __call__(self, request: Request) -> Answer | Pending:
        if request.path == "/boom":
            raise RuntimeError("a bug in the handler")
        text = b"%s %s?%s %s" % (request.method, request.path.encode(), request.query, request.body)
        if request.body.startswith(b"later"):
            future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
            self.held.append(future)
            return Pending(future, lambda f: self._answer(f, text))
        return Answer(200, text, content_type=b"text/plain")

    def _answer(self, future: asyncio.Future[bytes], text: bytes) -> Answer:
        self.answered.append("cancelled" if future.cancelled() else "done")
        return Answer(200, text if future.cancelled() else text + future.result(), content_type=b"text/plain")


def post(path: str, body: bytes, *extra: str, version: str = "1.1") -> bytes:
    head = [f"POST {path} HTTP/{version}", "host: test", f"content-length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    status_line, *lines = head.decode().strip().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    body = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", 0))), 10)
    return int(status_line.split()[1]), headers, body


async def closed(reader: asyncio.StreamReader) -> bool:
    return await asyncio.wait_for(reader.read(), 10) == b""


@pytest.fixture
async def echo_server() -> AsyncIterator[tuple[Echo, HttpServer]]:
    echo = Echo()
    async with serving_http(echo, Limits(max_body_bytes=1000, max_head_bytes=2000)) as http:
        yield echo, http


async def connect(http: HttpServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", http.port)


async def test_keep_alive_answers_many_calls_on_one_connection(echo_server: tuple[Echo, HttpServer]) -> None:
    _, http = echo_server
    reader, writer = await connect(http)
    for i in range(3):
        writer.write(post(f"/p{i}?q={i}", b"x" * i))
        status, headers, body = await read_answer(reader)
        assert (status, body) == (200, f"POST /p{i}?q={i} {'x' * i}".encode())
        assert headers["content-type"] == "text/plain"
        assert "connection" not in headers
    writer.close()


async def test_pipelined_answers_leave_in_request_order(echo_server: tuple[Echo, HttpServer]) -> None:
    """The first call is answered last by its handler; the connection still answers first things first."""
    echo, http = echo_server
    reader, writer = await connect(http)
    writer.write(post("/a", b"later") + post("/b", b"now") + post("/c", b"later too"))
    await until(lambda: len(echo.held) == 2)
    echo.held[1].set_result(b" (second held)")
    await asyncio.sleep(0.05)
    with pytest.raises(TimeoutError):  # nothing yet: /a is answered first
        await asyncio.wait_for(reader.readexactly(1), 0.1)
    echo.held[0].set_result(b" (first held)")
    answers = [await read_answer(reader) for _ in range(3)]
    assert [body for _, _, body in answers] == [
        b"POST /a? later (first held)",
        b"POST /b? now",
        b"POST /c? later too (second held)",
    ]
    writer.close()


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"NOT HTTP AT ALL\r\n\r\n", 400),
        (post("/big", b"x" * 1001), 413),
        (post("/long", b"", "x-filler: " + "y" * 2500), 431),
        (b"GET /" + b"u" * 2500 + b" HTTP/1.1\r\nhost: t\r\n\r\n", 431),
    ],
)
async def test_a_request_it_will_not_read_gets_its_status_and_the_connection_ends(
    echo_server: tuple[Echo, HttpServer], request_bytes: bytes, status: int
) -> None:
    _, http = echo_server
    reader, writer = await connect(http)
    writer.write(post("/first", b"ok") + request_bytes)  # answers owed before it are still given
    assert (await read_answer(reader))[2] == b"POST /first? ok"
    refused, headers, body = await read_answer(reader)
    assert (refused, headers["connection"], headers["content-type"]) == (status, "close", "application/json")
    assert body.startswith(b'{"detail":')
    assert await closed(reader)


async def test_connection_close_and_http_1_0_end_the_connection(echo_server: tuple[Echo, HttpServer]) -> None:
    _, http = echo_server
    for request in (post("/x", b"1", "connection: close"), post("/x", b"1", version="1.0")):
        reader, writer = await connect(http)
        writer.write(request)
        status, headers, _ = await read_answer(reader)
        assert (status, headers["connection"]) == (200, "close")
        assert await closed(reader)
    reader, writer = await connect(http)  # HTTP/1.0 that asks for keep-alive keeps it
    writer.write(post("/x", b"1", "connection: keep-alive", version="1.0") * 2)
    assert [(await read_answer(reader))[0] for _ in range(2)] == [200, 200]
    writer.close()


async def test_expect_100_continue_and_a_chunked_body(echo_server: tuple[Echo, HttpServer]) -> None:
    _, http = echo_server
    reader, writer = await connect(http)
    head = "POST /up HTTP/1.1\r\nhost: t\r\nexpect: 100-continue\r\ntransfer-encoding: chunked\r\n\r\n"
    writer.write(head.encode())
    assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10) == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
    assert (await read_answer(reader))[2] == b"POST /up? abcde"
    writer.close()


async def test_a_handler_bug_is_a_500_and_the_connection_goes_on(echo_server: tuple[Echo, HttpServer]) -> None:
    _, http = echo_server
    reader, writer = await connect(http)
    writer.write(post("/boom", b"") + post("/after", b""))
    assert (await read_answer(reader))[:3:2] == (500, b'{"detail":"Internal Server Error"}')
    assert (await read_answer(reader))[2] == b"POST /after? "
    writer.close()


async def test_a_lost_connection_cancels_its_pending_answers(echo_server: tuple[Echo, HttpServer]) -> None:
    """A batcher skips a cancelled call; the handler still makes its answer (its counts stay right)."""
    echo, http = echo_server
    _, writer = await connect(http)
    writer.write(post("/gone", b"later"))
    await until(lambda: bool(echo.held))
    writer.close()
    await until(lambda: bool(echo.answered))
    assert echo.held[0].cancelled()
    assert echo.answered == ["cancelled"]
    assert not http.connections


async def test_an_idle_connection_is_closed_after_keep_alive() -> None:
    async with serving_http(Echo(), Limits(keep_alive_s=0.2)) as http:
        reader, writer = await connect(http)
        writer.write(post("/x", b""))
        await read_answer(reader)
        started = time.monotonic()
        assert await closed(reader)
        assert 0.15 < time.monotonic() - started < 3
        writer.close()


async def test_close_finishes_what_it_owes_then_stops(echo_server: tuple[Echo, HttpServer]) -> None:
    """Shutdown: no new connections, idle ones closed, a held call still answered (then its connection closes)."""
    echo, http = echo_server
    idle_reader, idle_writer = await connect(http)
    busy_reader, busy_writer = await connect(http)
    busy_writer.write(post("/held", b"later"))
    await until(lambda: bool(echo.held))
    closing = asyncio.create_task(http.close(10))
    assert await closed(idle_reader)
    with pytest.raises(ConnectionRefusedError):
        await connect(http)
    echo.held[0].set_result(b" after all")
    status, headers, body = await read_answer(busy_reader)
    assert (status, headers["connection"], body) == (200, "close", b"POST /held? later after all")
    assert await closed(busy_reader)
    await asyncio.wait_for(closing, 10)
    idle_writer.close()
    busy_writer.close()


async def test_close_gives_up_on_answers_after_its_timeout() -> None:
    echo = Echo()
    handler: Handler = echo
    http = HttpServer(handler)
    await http.start("127.0.0.1", 0)
    reader, writer = await connect(http)
    writer.write(post("/never", b"later"))
    await until(lambda: bool(echo.held))
    started = time.monotonic()
    await http.close(0.3)
    assert time.monotonic() - started < 3
    assert await closed(reader)
    assert echo.answered == ["cancelled"]
    writer.close()
