"""The model server's HTTP/1.1: httptools' parser (the one uvicorn uses) under an `asyncio.Protocol`, answering from
a plain callback instead of an ASGI cycle.

Why not uvicorn: on a call that the model answers in ~0.1 ms, uvicorn's ASGI cycle (a task, a scope, the receive
and send messages) and the app around it cost about as much as the model. In `hubpulse bench inference` the model
server's CPU per call at 16 in flight fell from 0.298-0.320 to 0.226-0.260 ms unbatched and from 0.123-0.133 to
0.082-0.100 ms batched (docs/decisions/deployer.md, "Session 16").

What this module keeps of what uvicorn did for the model server:

- keep-alive (HTTP/1.1 by default, HTTP/1.0 on request), `Connection: close`, a connection idle for
  `keep_alive_s` closed (checked once a second, or twice per `keep_alive_s` if shorter);
- pipelining: answers leave in request order, whenever each is ready;
- `Expect: 100-continue`;
- bounded requests: 400 for what the parser refuses, 413 for a body over `max_body_bytes`, 431 for a head over
  `max_head_bytes` (each closes the connection);
- backpressure: a connection whose writes back up, or with `max_pipelined` answers pending, is not read;
- shutdown: `close()` stops listening, closes idle connections, lets the others finish the answers they owe (each
  then closes), and after `timeout_s` closes what is left.

A handler answers at once (`Answer`) or later (`Pending`: an answer made from a future once it is done). A pending
answer whose connection is lost has its future cancelled (a batcher then skips it), and its `answer` is still called,
so the handler's counts stay right.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, cast

import httptools

from hubpulse_common.service import SERVER_KEEPALIVE_S

KEEP_ALIVE_S = float(SERVER_KEEPALIVE_S)  # longer than the clients' pools keep one (hubpulse_common.service)
MAX_BODY_BYTES = 16 << 20
MAX_HEAD_BYTES = 64 << 10
MAX_PIPELINED = 64

logger = logging.getLogger(__name__)


# Request, Answer and Pending are made per call: not frozen, a frozen dataclass's __init__ costs ~4x as much
@dataclass(slots=True)
class Request:
    method: bytes
    path: str
    query: bytes
    host: bytes
    authorization: bytes
    body: bytes


@dataclass(slots=True)
class Answer:
    status: int
    body: bytes
    content_type: bytes = b"application/json"
    headers: tuple[tuple[bytes, bytes], ...] = ()


@dataclass(slots=True)
class Pending:
    """An answer that waits on `future`: `answer(future)` makes it once the future is done (or cancelled)."""

    future: asyncio.Future[Any]
    answer: Callable[[asyncio.Future[Any]], Answer]


Handler = Callable[[Request], Answer | Pending]


def detail(status: int, message: str) -> Answer:
    """The answers the server gives by itself, in FastAPI's shape (`{"detail": ...}`)."""
    return Answer(status, b'{"detail":"' + message.encode() + b'"}')


_OK_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: %s\r\ncontent-length: %d\r\n\r\n"
_STATUS_LINES = {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in HTTPStatus}


def encode(answer: Answer, close: bool) -> bytes:
    if not answer.headers and not close and answer.status == 200:  # a predict call's answer: one formatting
        return _OK_HEAD % (answer.content_type, len(answer.body)) + answer.body
    head = [
        _STATUS_LINES.get(answer.status) or f"HTTP/1.1 {answer.status} Unknown\r\n".encode(),
        b"content-type: " + answer.content_type + b"\r\n",
        b"content-length: %d\r\n" % len(answer.body),
    ]
    head.extend(name + b": " + value + b"\r\n" for name, value in answer.headers)
    if close:
        head.append(b"connection: close\r\n")
    head.append(b"\r\n")
    return b"".join(head) + answer.body


@dataclass(slots=True)
class _Slot:
    """One request's place in its connection's answer order."""

    keep_alive: bool
    answer: Answer | None = None  # once known
    pending: Pending | None = None


class _RequestRefused(Exception):
    def __init__(self, answer: Answer) -> None:
        super().__init__(answer.status)
        self.answer = answer


@dataclass(frozen=True)
class Limits:
    keep_alive_s: float = KEEP_ALIVE_S
    max_body_bytes: int = MAX_BODY_BYTES
    max_head_bytes: int = MAX_HEAD_BYTES
    max_pipelined: int = MAX_PIPELINED


class _Connection(asyncio.Protocol):
    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.limits = server.limits
        self.parser = httptools.HttpRequestParser(self)
        self.url = self.host = self.authorization = b""
        self.body: list[bytes] = []
        self.head_bytes = self.body_bytes = 0
        self.transport: asyncio.Transport | None = None
        self.slots: deque[_Slot] = deque()
        self.closing = False  # answer what is owed, then close
        self.broken = False  # the parser refused the stream: nothing more is read
        self.reading = True
        self.writable = True
        self.idle_since: float | None = None  # time.monotonic() when it last had nothing to answer

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio's subclasses
        self.server.connections.add(self)
        self.idle_since = time.monotonic()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.forget(self)
        self.closing = True
        for slot in self.slots:
            if slot.pending is not None:
                slot.pending.future.cancel()  # its done callback still runs the handler's answer
        self.slots.clear()

    def data_received(self, data: bytes) -> None:
        if self.broken:
            return
        self.idle_since = None
        try:
            self.parser.feed_data(data)  # each complete request is handled from on_message_complete
        except httptools.HttpParserUpgrade:
            self.shut()  # a protocol switch it does not do: the request is answered, then the connection ends
        except httptools.HttpParserError as exc:
            # a callback's own exception comes back as the parser error's context
            context = exc.__context__
            self._refuse(context.answer if isinstance(context, _RequestRefused) else detail(400, "Bad Request"))

    def pause_writing(self) -> None:
        self.writable = False
        self._pace()

    def resume_writing(self) -> None:
        self.writable = True
        self._pace()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.url = self.host = self.authorization = b""
        self.body = []
        self.head_bytes = self.body_bytes = 0

    # what the loop thread does per call is what the runtime thread waits for (one GIL): these stay lean
    def on_url(self, url: bytes) -> None:
        self.url += url
        self.head_bytes += len(url)
        if self.head_bytes > self.limits.max_head_bytes:
            self._head_too_large()

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_bytes += len(name) + len(value)
        if self.head_bytes > self.limits.max_head_bytes:
            self._head_too_large()
        name = name.lower()
        if name == b"authorization":
            self.authorization = value
        elif name == b"host":
            self.host = value
        elif name == b"expect" and value.lower() == b"100-continue" and self.transport is not None:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)
        if self.body_bytes > self.limits.max_body_bytes:
            raise _RequestRefused(detail(413, f"the body is over {self.limits.max_body_bytes} bytes"))
        self.body.append(body)

    def on_message_complete(self) -> None:
        path, query = self.url, b""
        if not path.startswith(b"/") or b"?" in path or b"#" in path:  # else the path is the URL as sent
            try:
                url = httptools.parse_url(path)
            except httptools.HttpParserInvalidURLError:
                raise _RequestRefused(detail(400, "Bad Request")) from None
            path, query = url.path or b"/", url.query or b""
        body = self.body
        request = Request(
            self.parser.get_method(),
            path.decode("latin-1"),
            query,
            self.host,
            self.authorization,
            body[0] if len(body) == 1 else b"".join(body),
        )
        slot = _Slot(keep_alive=self.parser.should_keep_alive())
        self.slots.append(slot)
        try:
            result = self.server.handler(request)
        except Exception:  # caught here: out of a parser callback, it would read as a bad request
            logger.exception("the handler failed on %s %s", request.method.decode(), request.path)
            result = detail(500, "Internal Server Error")
        if isinstance(result, Answer):
            slot.answer = result
            self._flush()
        else:
            slot.pending = result
            result.future.add_done_callback(lambda _: self._answered(slot))
            if len(self.slots) >= self.limits.max_pipelined:
                self._pace()

    def _answered(self, slot: _Slot) -> None:
        pending = slot.pending
        assert pending is not None
        slot.answer = pending.answer(pending.future)  # even for a lost connection: the handler counts it
        slot.pending = None
        self._flush()

    def _flush(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        slots = self.slots
        while slots and slots[0].answer is not None:
            slot = slots.popleft()
            last = not slot.keep_alive or (self.closing and not slots)
            transport.write(encode(cast(Answer, slot.answer), close=last))
            if last:
                self.closing = True
                transport.close()
                return
        if not self.reading:
            self._pace()
        if not slots:
            self.idle_since = time.monotonic()

    def _refuse(self, answer: Answer) -> None:
        """Answers a request the server will not read (after the answers owed before it), then closes."""
        self.closing = self.broken = True
        self.slots.append(_Slot(keep_alive=False, answer=answer))
        self._flush()

    def _head_too_large(self) -> None:
        raise _RequestRefused(detail(431, f"the request head is over {self.limits.max_head_bytes} bytes"))

    def _pace(self) -> None:
        """Reads while writes flow and a bounded number of answers are owed."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        read = self.writable and len(self.slots) < self.limits.max_pipelined
        if read != self.reading:
            self.reading = read
            if read:
                transport.resume_reading()
            else:
                transport.pause_reading()

    def shut(self) -> None:
        """Closes now when nothing is owed, else after the answers owed."""
        self.closing = True
        if not self.slots and self.transport is not None:
            self.transport.close()


@dataclass
class HttpServer:
    """`await start(host, port)`; `port` is the bound one (0 picks a free port); `await close(timeout_s)`."""

    handler: Handler
    limits: Limits = field(default_factory=Limits)
    connections: set[_Connection] = field(default_factory=set)
    port: int = 0
    _server: asyncio.Server | None = None
    _emptied: asyncio.Event | None = None  # set once closing and every connection is gone
    _sweeper: asyncio.TimerHandle | None = None

    async def start(self, host: str, port: int, backlog: int = 2048) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), host, port, backlog=backlog)
        self.port = self._server.sockets[0].getsockname()[1]
        self._sweep()

    def _sweep(self) -> None:
        """Closes the connections idle for keep_alive_s, once a second: a timer per connection, set and cancelled
        around every call, cost 10-17 µs a call (docs/decisions/deployer.md, "Session 16")."""
        cutoff = time.monotonic() - self.limits.keep_alive_s
        for connection in list(self.connections):
            if connection.idle_since is not None and connection.idle_since < cutoff:
                connection.shut()
        period = min(1.0, self.limits.keep_alive_s / 2)
        self._sweeper = asyncio.get_running_loop().call_later(period, self._sweep)

    async def close(self, timeout_s: float) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._server is not None:
            self._server.close()
        self._emptied = asyncio.Event()
        for connection in list(self.connections):
            connection.shut()
        if not self.connections:
            self._emptied.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._emptied.wait(), timeout_s)
        for connection in list(self.connections):
            if connection.transport is not None:
                connection.transport.abort()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1)

    def forget(self, connection: _Connection) -> None:
        self.connections.discard(connection)
        if self._emptied is not None and not self.connections:
            self._emptied.set()
