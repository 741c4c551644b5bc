"""What huggingface.co does beyond one day's numbers: live scores that move during a walk, renames, private
repos and their owners' tokens, the 2022-03-02 creation-date placeholder and the fixed-window rate limit.

Each behaviour is set through `/_replay/live` (see routes/replay.py) and read by the routes; the sources of
the real behaviours are listed in docs/decisions/replay-hub.md.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Every repo created before the Hub began storing creation dates carries this createdAt (and its ObjectId
# carries this second), e.g. openai-community/gpt2 with _id 621ffdc036468d709f17434d.
PLACEHOLDER_CREATED_AT = "2022-03-02T23:29:04.000Z"
PLACEHOLDER_TS = dt.datetime(2022, 3, 2, 23, 29, 4, tzinfo=dt.UTC).timestamp()
INVALID_CREDENTIALS_MESSAGE = "Invalid credentials in Authorization header"


class ScoreMove(BaseModel):
    """After `after_requests` list requests (counted from when it was set), these models' trendingScore become
    the given values: a model that falls or rises between two pages of one walk."""

    after_requests: int = Field(0, ge=0)
    scores: dict[str, float]


class LiveConfig(BaseModel):
    moves: list[ScoreMove] = Field(default_factory=list)
    renames: dict[str, str] = Field(default_factory=dict, description="old id -> new id")
    tokens: dict[str, str] = Field(default_factory=dict, description="token -> user; empty: any token is accepted")
    private: list[str] = Field(default_factory=list, description="model ids only their namespace's token lists")
    extra_items: list[Any] = Field(
        default_factory=list, description="raw items appended to the last page of every list (odd values, for tests)"
    )
    quota: int = Field(0, ge=0, description="requests per window per caller on /api (huggingface.co: 500); 0 = off")
    window_s: float = Field(300.0, gt=0)


@dataclass
class _Window:
    started: float
    used: int = 0


@dataclass
class LiveState:
    config: LiveConfig = field(default_factory=LiveConfig)
    list_requests: int = 0
    version: int = 0  # bumped whenever served scores change, so cached orders are rebuilt
    _scores: dict[str, float] = field(default_factory=dict)
    _windows: dict[str, _Window] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.count_list_request(0)

    def configure(self, config: LiveConfig) -> None:
        with self._lock:
            self.config, self.list_requests, self._scores, self._windows = config, 0, {}, {}
            self.version += 1
        self.count_list_request(0)

    def count_list_request(self, n: int = 1) -> None:
        """Applies the score moves that are due after this many list requests."""
        with self._lock:
            self.list_requests += n
            due = [m for m in self.config.moves if m.after_requests <= self.list_requests]
            changed = False
            for move in due:
                for model_id, score in move.scores.items():
                    if self._scores.get(model_id) != score:
                        self._scores[model_id], changed = score, True
            if changed:
                self.version += 1

    def scores(self) -> dict[str, float]:
        with self._lock:
            return dict(self._scores)

    # ---- renames: the old id answers 307, lists show only the new one -----------------------------
    def new_name(self, old: str) -> str | None:
        return self.config.renames.get(old)

    def original_name(self, served: str) -> str:
        for old, new in self.config.renames.items():
            if new == served:
                return old
        return served

    # ---- callers ---------------------------------------------------------------------------------
    def caller(self, authorization: str) -> tuple[str | None, bool]:
        """(user, valid): no header is anonymous; with a registry, an unknown bearer token is invalid."""
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if not authorization or scheme.lower() != "bearer" or not token:
            return None, not authorization
        tokens = self.config.tokens
        if not tokens:
            return None, True
        user = tokens.get(token)
        return user, user is not None

    def visible(self, model_id: str, user: str | None) -> bool:
        return model_id not in self.config.private or (user is not None and model_id.split("/", 1)[0] == user)

    # ---- rate limit: a fixed window per caller, as the RateLimit/RateLimit-Policy headers describe ----
    def take(self, caller: str) -> tuple[bool, dict[str, str]]:
        """(allowed, headers) for one /api request; no headers when the quota is off."""
        quota, window_s = self.config.quota, self.config.window_s
        if quota <= 0:
            return True, {}
        now = time.monotonic()
        with self._lock:
            window = self._windows.get(caller)
            if window is None or now - window.started >= window_s:
                window = self._windows[caller] = _Window(started=now)
            allowed = window.used < quota
            if allowed:
                window.used += 1
            remaining = quota - window.used
            reset = max(0, int(window.started + window_s - now + 0.999))
        headers = {
            "RateLimit": f'"api";r={remaining};t={reset}',
            "RateLimit-Policy": f'"fixed window";"api";q={quota};w={int(window_s)}',
        }
        return allowed, headers


class HubGateMiddleware:
    """On /api/: a bearer token the registry does not know gets huggingface.co's 401; each request takes one
    unit of the caller's fixed-window quota, answered with RateLimit headers, and a 429 past it (no Retry-After:
    huggingface.co does not promise one; the RateLimit header's `t` says when the window resets)."""

    def __init__(self, app: ASGIApp, live: LiveState) -> None:
        self.app, self.live = app, live

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        user, valid = self.live.caller(headers.get("authorization", ""))
        if not valid:
            await _send_json(send, 401, {"error": INVALID_CREDENTIALS_MESSAGE}, {})
            return
        client = scope.get("client") or ("?", 0)
        allowed, limit_headers = self.live.take(user or str(client[0]))
        if not allowed:
            await _send_json(send, 429, {"error": "You have exceeded our rate limit of API requests"}, limit_headers)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start" and limit_headers:
                extra = [(k.lower().encode(), v.encode()) for k, v in limit_headers.items()]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _send_json(send: Send, status: int, body: object, headers: dict[str, str]) -> None:
    raw = orjson.dumps(body)
    pairs = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    pairs += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": pairs})
    await send({"type": "http.response.body", "body": raw})
