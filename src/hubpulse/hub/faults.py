"""Seeded fault injection for the replay Hub's /api routes: 429 (Retry-After only when asked), 5xx, slow,
truncated, malformed.

One random draw per knob per request from a seeded generator, so the same request sequence meets the
same faults. `fail_next` forces the next N requests to fail with `fail_status`, for exact bursts.
"""

from __future__ import annotations

import asyncio
import random
import threading
from typing import Literal

import orjson
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

Fault = Literal["none", "429", "5xx", "truncate", "malformed"]


class FaultConfig(BaseModel):
    seed: int = 0
    rate_429: float = Field(0.0, ge=0.0, le=1.0)
    retry_after: int | None = Field(
        None, ge=0, description="seconds sent in Retry-After with every 429; none by default, as on huggingface.co"
    )
    rate_5xx: float = Field(0.0, ge=0.0, le=1.0)
    rate_slow: float = Field(0.0, ge=0.0, le=1.0)
    slow_seconds: float = Field(0.5, ge=0.0, le=60.0)
    rate_truncate: float = Field(0.0, ge=0.0, le=1.0)
    rate_malformed: float = Field(0.0, ge=0.0, le=1.0)
    fail_next: int = Field(0, ge=0, description="the next N /api requests fail with fail_status")
    fail_after: int = Field(0, ge=0, description="fail_next starts after this many /api requests succeeded")
    fail_status: int = Field(503, ge=400, le=599)
    path_prefix: str = "/api/"


class FaultInjector:
    """Holds the knobs and the seeded generator; `decide()` is one request's fate."""

    def __init__(self, config: FaultConfig | None = None) -> None:
        self._lock = threading.Lock()
        self.configure(config or FaultConfig())

    def configure(self, config: FaultConfig) -> None:
        with self._lock:
            self.config = config
            self._rng = random.Random(config.seed)
            self._forced = config.fail_next
            self._spared = config.fail_after

    def state(self) -> dict[str, object]:
        with self._lock:
            return {**self.config.model_dump(), "fail_next": self._forced}

    def decide(self) -> tuple[Fault, bool, int]:
        """(fault, slow, status) for the next request."""
        with self._lock:
            c = self.config
            if self._spared > 0:
                self._spared -= 1
            elif self._forced > 0:
                self._forced -= 1
                return ("429" if c.fail_status == 429 else "5xx"), False, c.fail_status
            draws = [self._rng.random() for _ in range(5)]
            slow = draws[4] < c.rate_slow
            if draws[0] < c.rate_429:
                return "429", slow, 429
            if draws[1] < c.rate_5xx:
                return "5xx", slow, self._rng.choice((500, 502, 503))
            if draws[2] < c.rate_truncate:
                return "truncate", slow, 200
            if draws[3] < c.rate_malformed:
                return "malformed", slow, 200
            return "none", slow, 200


def _json_headers(body: bytes, extra: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]


class FaultMiddleware:
    """Pure ASGI middleware (no per-request task overhead) applying the injector's decision."""

    def __init__(self, app: ASGIApp, injector: FaultInjector) -> None:
        self.app, self.injector = app, injector

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.injector.config.path_prefix):
            await self.app(scope, receive, send)
            return
        fault, slow, status = self.injector.decide()
        if slow:
            await asyncio.sleep(self.injector.config.slow_seconds)
        if fault in ("429", "5xx"):
            retry_after = self.injector.config.retry_after
            extra = [(b"retry-after", str(retry_after).encode())] if status == 429 and retry_after is not None else []
            message = "Rate limit reached, retry later" if status == 429 else "Internal error (injected)"
            body = orjson.dumps({"error": message})
            await send({"type": "http.response.start", "status": status, "headers": _json_headers(body, extra)})
            await send({"type": "http.response.body", "body": body})
            return
        if fault == "none":
            await self.app(scope, receive, send)
            return
        await self._corrupt(fault, scope, receive, send)

    async def _corrupt(self, fault: Fault, scope: Scope, receive: Receive, send: Send) -> None:
        """Runs the real handler, then cuts its body in half (truncate) or swaps it for a wrong shape."""
        start: Message = {}
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, capture)
        body = b"".join(chunks)
        body = body[: len(body) // 2] if fault == "truncate" else b'{"unexpected": [1, 2, 3]}'
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body})
