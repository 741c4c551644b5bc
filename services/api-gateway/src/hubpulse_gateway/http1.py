"""The data plane's HTTP/1.1 client for model servers: keep-alive connections per address (at most
`max_connections`, 100 as in aiohttp's pool: a burst queues rather than opening a socket per call), one call at a
time on each, answers parsed by httptools (the parser the model server itself uses).

Why not aiohttp here: on the predict path the client's CPU is latency and throughput of the gateway's one core, and
aiohttp's client cost ~120 µs per call against ~15 µs for this one (docs/decisions/deployer.md, "Session 16"). It
covers what that path needs and no more: `http://host:port` addresses, a request with a body, answers with a
`content-length` or chunked body, `Connection: close`, a connect timeout and an answer timeout. aiohttp stays the
client of every other upstream.

`post` raises `ConnectFailed` when no connection could be made (nothing was sent) and `AnswerLost` when the request
went out and no whole answer came back within `timeout_s` (the server may have run it). A pooled connection idle
for longer than `max_idle_s` is closed instead of reused: below a model server's keep-alive (uvicorn's default is
5 s; hubpulse's own keep 75 s), so a call never goes out on a connection the server is closing. Answer timeouts
are enforced by one sweep over the calls in flight (every `timeout_s / 4`, at most 1 s), not a timer per call: on
the model server's side of the same hop, a timer set and cancelled around every call cost 10-17 µs a call
(docs/decisions/deployer.md, "Session 16").
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from typing import cast
from urllib.parse import urlsplit

import httptools

MAX_IDLE_S = 2.0
MAX_IDLE_PER_ADDRESS = 64
MAX_CONNECTIONS_PER_ADDRESS = 100  # as aiohttp's pool: a burst of calls queues instead of opening a socket each


class ConnectFailed(Exception):
    """No connection: the request was not sent."""


class AnswerLost(Exception):
    """The request was sent (at least in part) and no whole answer came back."""


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.answer: asyncio.Future[tuple[int, bytes]] | None = None
        self.body: list[bytes] = []
        self.reusable = True
        self.idle_since = 0.0
        self.deadline = 0.0  # time.monotonic() by which the answer must be in

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio's subclasses

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        if self.answer is not None and not self.answer.done():
            self.answer.set_exception(AnswerLost(f"the connection closed before the answer: {exc or 'EOF'}"))

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.reusable = False
            if self.answer is not None and not self.answer.done():
                self.answer.set_exception(AnswerLost(f"an answer that is not HTTP/1.1: {exc}"))
            if self.transport is not None:
                self.transport.close()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        body = self.body
        self.body = []
        self.reusable = self.reusable and self.parser.should_keep_alive()
        answer = self.answer
        if answer is None or answer.done():  # an answer nobody asked for: the stream is not to be trusted
            self.reusable = False
            return
        answer.set_result((self.parser.get_status_code(), body[0] if len(body) == 1 else b"".join(body)))

    def close(self) -> None:
        self.reusable = False
        if self.transport is not None:
            self.transport.close()


@dataclass
class _Address:
    """One model server's connections: a call holds one of `slots` while it is in flight."""

    slots: asyncio.Semaphore
    idle: deque[_Connection] = field(default_factory=deque)
    calls_in: int = 0  # calls waiting for a slot or holding one


class Http1Pool:
    """Keep-alive connections by address; safe to share between concurrent calls of one event loop. A sweep (every
    `timeout_s / 4`, at most 1 s) fails overdue answers, closes connections idle past `max_idle_s` and forgets
    the addresses nothing uses any more (deployments come and go; their ports are not reused)."""

    def __init__(
        self,
        *,
        timeout_s: float,
        connect_timeout_s: float,
        max_idle_s: float = MAX_IDLE_S,
        max_connections: int = MAX_CONNECTIONS_PER_ADDRESS,
    ) -> None:
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.max_idle_s = max_idle_s
        self.max_connections = max_connections
        self._addresses: dict[tuple[str, int], _Address] = {}
        self._heads: dict[tuple[str, str], tuple[tuple[str, int], bytes]] = {}  # (url, path) -> address, head
        self._busy: set[_Connection] = set()
        self._sweeper: asyncio.TimerHandle | None = None

    async def post(self, url: str, path: str, body: bytes, headers: bytes = b"") -> tuple[int, bytes]:
        """(status, body) of `POST {url}{path}`; `headers` are extra header lines, each ending in CRLF. With
        `max_connections` calls in flight to the address, a call waits for one to end; the wait counts toward
        `connect_timeout_s`, as in aiohttp (`ConnectFailed`: it was not sent)."""
        if self._sweeper is None:
            self._sweep()
        address, head = self._head(url, path)
        state = self._addresses.get(address)
        if state is None:
            state = self._addresses[address] = _Address(asyncio.Semaphore(self.max_connections))
        state.calls_in += 1  # waiting or in flight: the sweep forgets an address only when it has none
        try:
            await self._acquire(state.slots, address)
            try:
                return await self._post(address, state, head, body, headers)
            finally:
                state.slots.release()
        finally:
            state.calls_in -= 1

    async def _acquire(self, slots: asyncio.Semaphore, address: tuple[str, int]) -> None:
        if not slots.locked():  # a timer only when the call has to wait
            await slots.acquire()
            return
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                await slots.acquire()
        except TimeoutError:
            where = f"{address[0]}:{address[1]}"
            raise ConnectFailed(f"no free connection to {where} within {self.connect_timeout_s} s") from None

    async def _post(
        self, address: tuple[str, int], state: _Address, head: bytes, body: bytes, headers: bytes
    ) -> tuple[int, bytes]:
        connection = await self._connection(address, state.idle)
        answer: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        connection.answer = answer
        connection.deadline = time.monotonic() + self.timeout_s
        self._busy.add(connection)
        assert connection.transport is not None
        connection.transport.write(b"%s%scontent-length: %d\r\n\r\n%s" % (head, headers, len(body), body))
        try:
            result = await answer
        except BaseException:  # AnswerLost, or the caller cancelled: the stream is mid-answer
            connection.close()
            raise
        finally:
            self._busy.discard(connection)
            connection.answer = None
        if connection.reusable and len(state.idle) < MAX_IDLE_PER_ADDRESS:
            connection.idle_since = time.monotonic()
            state.idle.append(connection)
        else:
            connection.close()
        return result

    def _sweep(self) -> None:
        now = time.monotonic()
        for connection in [c for c in self._busy if c.deadline < now]:
            if connection.answer is not None and not connection.answer.done():
                connection.answer.set_exception(AnswerLost(f"no answer within {self.timeout_s} s"))
        fresh_after = now - self.max_idle_s
        for address, state in list(self._addresses.items()):
            while state.idle and not _fresh(state.idle[0], fresh_after):  # the oldest are on the left
                state.idle.popleft().close()
            if not state.idle and not state.calls_in:
                del self._addresses[address]
        for key, (address, _) in list(self._heads.items()):
            if address not in self._addresses:
                del self._heads[key]
        period = min(1.0, self.timeout_s / 4)
        self._sweeper = asyncio.get_running_loop().call_later(period, self._sweep)

    def _head(self, url: str, path: str) -> tuple[tuple[str, int], bytes]:
        cached = self._heads.get((url, path))
        if cached is None:
            parts = urlsplit(url)
            if parts.scheme != "http" or not parts.hostname:
                raise ConnectFailed(f"{url}: only http://host:port addresses are called directly")
            address = (parts.hostname, parts.port or 80)
            full = (parts.path.rstrip("/") + path).encode()
            head = b"POST %s HTTP/1.1\r\nhost: %s\r\n" % (full, parts.netloc.encode())
            cached = self._heads[(url, path)] = (address, head)
        return cached

    async def _connection(self, address: tuple[str, int], idle: deque[_Connection]) -> _Connection:
        fresh_after = time.monotonic() - self.max_idle_s
        while idle:
            connection = idle.pop()  # the most recently used: the least likely to be stale
            if _fresh(connection, fresh_after):
                return connection
            connection.close()
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                _, protocol = await loop.create_connection(_Connection, *address)
        except (OSError, TimeoutError) as exc:
            raise ConnectFailed(f"{address[0]}:{address[1]}: {type(exc).__name__}: {exc}") from exc
        return protocol

    async def aclose(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for state in self._addresses.values():
            for connection in state.idle:
                connection.close()
            state.idle.clear()


def _fresh(connection: _Connection, fresh_after: float) -> bool:
    return connection.reusable and connection.idle_since > fresh_after
