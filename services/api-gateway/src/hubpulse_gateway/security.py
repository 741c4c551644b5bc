"""Who is calling: access JWTs verified offline against the auth service's JWKS, API keys, web-session cookies.

Use in a route (FastAPI `Annotated` dependencies, declared in `deps.py`):

    from hubpulse_gateway.deps import CurrentUser, OptionalUser, MemberUser, AdminUser

    @router.get("/v1/things")
    async def things(user: CurrentUser) -> ...:            # 401 without valid credentials; any role
        ...  # user.user_id, user.org_id, user.role, user.email, user.scopes
    @router.post("/v1/things")
    async def make(user: MemberUser) -> ...:               # 403 for viewers (hubpulse_common.identity.require_role)
    @router.get("/v1/public")
    async def public(user: OptionalUser) -> ...:           # None when anonymous (still 401 for a bad credential)

Credentials, first found wins: `Authorization: Bearer <access JWT | API key>`, `X-API-Key: <API key>`,
then the `hp_access` cookie of a web session. Roles are per organisation and ordered viewer < member < admin;
an API key acts with its creator's role in its organisation, capped at viewer unless it has the `write` scope.

Access tokens: ES256 only (so `alg: none` and HMAC tricks are refused), `kid` must be in the JWKS (fetched from
`{auth_url}/.well-known/jwks.json`, cached `jwks_max_age_s`, refetched at once for an unknown `kid`, at most every
`jwks_min_refresh_s`), and `iss`, `aud`, `exp`, `sub` checked. API keys are checked by the auth service and the
answer cached `api_key_cache_s` (a revocation through this gateway evicts it at once).

CSRF: a write (POST/PUT/PATCH/DELETE) authenticated by the session cookie must carry `X-CSRF-Token` equal to
the `hp_csrf` cookie the login set; its hash is bound into the access token, so a stolen cookie alone fails (403).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any, Generic, Literal, TypeVar

from fastapi import Request
from limits import parse
from starlette.types import ASGIApp, Receive, Scope, Send

from hubpulse_common.http import ApiError, ClientAddress, Unauthorized, error_response
from hubpulse_common.identity import (
    Identity,
    InvalidToken,
    JwksCache,
    TokenVerifier,
    identity_from_claims,
    token_kid,
    verify_access_token,
)
from hubpulse_gateway.errors import CsrfFailed
from hubpulse_gateway.ratelimit import FailoverLimiter
from hubpulse_gateway.settings import GatewaySettings
from hubpulse_gateway.upstream import Upstreams

__all__ = ["InvalidToken", "JwksCache", "token_kid", "verify_access_token"]  # shared with every service
API_KEY_PREFIX = "hpk_"
ACCESS_COOKIE = "hp_access"
REFRESH_COOKIE = "hp_refresh"
CSRF_COOKIE = "hp_csrf"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def csrf_matches(claims: dict[str, Any], header_value: str | None) -> bool:
    expected = claims.get("csrf")
    if not isinstance(expected, str) or not header_value:
        return False
    return hmac.compare_digest(expected, sha256_hex(header_value))


V = TypeVar("V")


class SecretKeyedCache(Generic[V]):
    """Answers about a secret (an API key, an access token) for a few seconds, kept under the secret's SHA-256."""

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl_s = ttl_s
        self._clock = clock
        self._entries: dict[str, tuple[float, V]] = {}

    def fresh(self, secret: str) -> V | None:
        entry = self._entries.get(sha256_hex(secret))
        return entry[1] if entry is not None and entry[0] >= self._clock() else None

    def stale(self, secret: str) -> V | None:
        """The answer even past its time (None if there never was one)."""
        entry = self._entries.get(sha256_hex(secret))
        return entry[1] if entry is not None else None

    def put(self, secret: str, value: V, lifetime_s: float = float("inf")) -> None:
        """Kept for `ttl_s`, and never past `lifetime_s`."""
        if len(self._entries) > 10_000:
            now = self._clock()
            self._entries = {k: v for k, v in self._entries.items() if v[0] >= now}
        self._entries[sha256_hex(secret)] = (self._clock() + min(self._ttl_s, lifetime_s), value)


class ApiKeyCache(SecretKeyedCache[Identity]):
    """Verified API keys, so a busy client does not cost a round trip per request; `lifetime_s` is what is left
    of the key's minted token."""

    def evict(self, key_id: str) -> None:
        self._entries = {k: v for k, v in self._entries.items() if v[1].api_key_id != key_id}


class SessionChecks(SecretKeyedCache[bool]):
    """The auth service's answer to "is this login session still active?" per access token, for a few seconds.

    A logout or a password change revokes refresh-token families; their access tokens die here within
    `ttl_s` instead of living to their expiry. If the auth service cannot answer, a token it called active
    before stays accepted (a short auth outage does not log everyone out).
    """


# Where the rate-limit middleware leaves the claims it verified, so the route's dependency does not verify twice.
_VERIFIED = "hubpulse.verified_token"


class Security:
    """Per gateway app (opened by `app.py`'s lifespan, handed out by `deps.SecurityDep`): verifies credentials."""

    def __init__(self, settings: GatewaySettings, upstreams: Upstreams) -> None:
        self.settings = settings
        self.upstreams = upstreams
        self.verifier = TokenVerifier(self._fetch_jwks, settings)
        self.api_keys = ApiKeyCache(settings.api_key_cache_s)
        self.sessions = SessionChecks(settings.session_check_cache_s)

    async def _fetch_jwks(self) -> dict[str, Any]:
        body: dict[str, Any] = await self.upstreams.auth.json("GET", "/.well-known/jwks.json")
        return body

    async def verify_token(self, token: str, state: dict[str, Any] | None = None) -> dict[str, Any]:
        """Signature and claims (memoised in the request's `state`), then the session check."""
        if state is not None and (done := state.get(_VERIFIED)) is not None and done[0] == token:
            claims: dict[str, Any] = done[1]
        else:
            claims = await self.verifier.claims(token)
            if state is not None:
                state[_VERIFIED] = (token, claims)
        await self._check_session(token, claims)
        return claims

    async def _check_session(self, token: str, claims: dict[str, Any]) -> None:
        if not claims.get("sid"):
            return  # minted for an API key: the key itself was verified moments ago
        active = self.sessions.fresh(token)
        if active is None:
            try:
                await self.upstreams.auth.request("GET", "/internal/sessions/check", headers=_bearer(token))
                active = True
            except ApiError as exc:
                if exc.status == 401:
                    active = False
                elif (active := self.sessions.stale(token)) is None:
                    raise
            self.sessions.put(token, active)
        if not active:
            raise InvalidToken("this session ended (logout or password change); log in again")

    async def verify_api_key(self, key: str) -> Identity:
        cached = self.api_keys.fresh(key)
        if cached is not None:
            return cached
        try:
            body = await self.upstreams.auth.json("POST", "/internal/api-keys/verify", json={"key": key})
        except ApiError as exc:
            if exc.status in (401, 403, 404, 422):
                raise InvalidToken("invalid or revoked API key") from None
            raise
        principal = Identity(
            user_id=body["user_id"],
            org_id=body["org_id"],
            role=body["role"],
            email=body.get("email"),
            scopes=frozenset(body["scopes"]),
            api_key_id=body["key_id"],
            token=body["access_token"],
            via="api_key",
            expires_at=time.time() + float(body["expires_in"]),
        )
        # the token must outlive its use in the cache, with the services' leeway to spare
        self.api_keys.put(key, principal, float(body["expires_in"]) / 2)
        return principal

    async def authenticate(self, request: Request) -> Identity | None:
        """The caller, None when anonymous; ApiError 401 for a bad credential, 403 for a missing CSRF token."""
        credential, via = presented_credential(request)
        if credential is None:
            return None
        try:
            if credential.startswith(API_KEY_PREFIX):
                return await self.verify_api_key(credential)
            claims = await self.verify_token(credential, request.scope.setdefault("state", {}))
        except InvalidToken as exc:
            raise Unauthorized(f"invalid credentials: {exc}", {"www-authenticate": "Bearer"}) from None
        cookie_write = via == "cookie" and request.method not in SAFE_METHODS
        if cookie_write and not csrf_matches(claims, request.headers.get(CSRF_HEADER)):
            raise CsrfFailed("missing or wrong X-CSRF-Token header for a cookie session")
        return identity_from_claims(claims, credential, via)

    async def rate_subject(self, scope: Scope) -> str | None:
        """Whom a request's rate-limit bucket belongs to when its credential is genuine, else None (its IP's).

        A made-up API key or token gets no bucket of its own: only a key verified moments ago (cached) or a token
        whose signature checks counts as a principal. Nothing is fetched here; a bad credential is left to the
        route to refuse.
        """
        request = Request(scope)
        credential, _ = presented_credential(request)
        if credential is None:
            return None
        if credential.startswith(API_KEY_PREFIX):
            known = self.api_keys.fresh(credential)
            return f"key:{known.api_key_id}" if known is not None else None
        try:
            claims = await self.verifier.claims(credential)
        except (InvalidToken, ApiError):
            return None
        scope.setdefault("state", {})[_VERIFIED] = (credential, claims)
        return f"user:{claims['sub']}"


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def presented_credential(request: Request) -> tuple[str | None, Literal["bearer", "cookie"]]:
    authorization = request.headers.get("authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip(), "bearer"
    if api_key := request.headers.get("x-api-key"):
        return api_key.strip(), "bearer"
    return request.cookies.get(ACCESS_COOKIE), "cookie"


class RateLimitMiddleware:
    """Per principal, else per client IP, with the `limits` sliding window counter; 429 with Retry-After beyond it.

    The bucket is a principal's only for a credential that is genuine (`Security.rate_subject`): a made-up
    API key or token counts against the client's IP, so rotating fake keys buys no budget. The client IP is the
    TCP peer, or the X-Forwarded-For hop a trusted proxy vouches for (`trusted_proxies`, default none).
    Sign-ups and logins also share a per-IP budget (`auth_limit`), ahead of the auth service's password hashing.

    The sliding window counter (two fixed-window counts, the previous one weighted) costs the same at any
    limit. The moving window keeps every hit of the window per key, prepends to that list and bisects it on a
    thread, which showed in the gateway's CPU profile (docs/decisions/search-and-web.md). The per-account login
    limit keeps the exact moving window (auth service), where the counts are tiny and exactness matters.

    The counters live in `limiter`: this process's memory, or MongoDB shared by every replica
    (`rate_limit_storage`, hubpulse_gateway.ratelimit).
    """

    EXEMPT = ("/healthz", "/readyz", "/metrics", "/static/")
    AUTH_PATHS = frozenset({"/v1/auth/login", "/v1/auth/signup"})

    def __init__(
        self, app: ASGIApp, limit: str, auth_limit: str, client: ClientAddress, limiter: FailoverLimiter
    ) -> None:
        self.app = app
        self.limit = parse(limit)
        self.auth_limit = parse(auth_limit)
        self.client = client
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.EXEMPT):
            await self.app(scope, receive, send)
            return
        ip = self.client.of(scope)
        checks = [(self.limit, await self._subject(scope) or f"ip:{ip}", "too many requests")]
        if scope["path"] in self.AUTH_PATHS:
            checks.append((self.auth_limit, f"auth-ip:{ip}", "too many sign-in attempts from your address"))
        for limit, key, what in checks:
            if not await self.limiter.hit(limit, key):
                retry_after = await self.limiter.retry_after(limit, key)
                response = error_response(
                    429, "rate_limited", f"{what}; retry in {retry_after} s", {"retry-after": str(retry_after)}
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _subject(self, scope: Scope) -> str | None:
        state = getattr(scope["app"].state, "gateway", None)
        return None if state is None else await state.security.rate_subject(scope)
