"""Who is calling an internal service: the caller's access JWT, verified here against the auth service's JWKS.

The gateway forwards every authenticated call with `Authorization: Bearer <access JWT>` (for an API-key caller,
a short-lived JWT the auth service minted for that key). Internal services never believe identity headers or
query parameters: the verified token is the identity, so a direct call from inside the network needs a token
the auth service signed. Use in a route:

    from hubpulse_common.identity import CallerIdentity

    @router.get("/things")
    async def things(who: CallerIdentity) -> ...:   # 401 without a valid token; who.user_id, who.org_id, who.role

The app's lifespan opens the verifier once: `async with open_token_verifier(app, settings): ...` (the JWKS is
fetched from `{auth_url}/.well-known/jwks.json`), or `install_token_verifier(app, verifier)` with any key source
(the auth service passes its own key ring).

Tokens: ES256 only (so `alg: none` and HMAC tricks are refused), `kid` must be in the JWKS (cached
`jwks_max_age_s`, refetched at once for an unknown `kid`, at most every `jwks_min_refresh_s`), and `iss`,
`aud`, `exp`, `sub`, `org`, `role` checked.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, cast

import httpx
from cachetools import TTLCache
from fastapi import Depends, FastAPI
from fastapi.exceptions import WebSocketException
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jws import extract_compact
from starlette.requests import HTTPConnection
from starlette.status import WS_1008_POLICY_VIOLATION

from hubpulse_common.http import Forbidden, Unauthorized, Unavailable
from hubpulse_common.logging import get_logger
from hubpulse_common.settings import ServiceSettings

log = get_logger(__name__)

Role = Literal["viewer", "member", "admin"]
ROLE_RANK: dict[str, int] = {"viewer": 0, "member": 1, "admin": 2}
ALGORITHMS = ["ES256"]
LEEWAY_S = 5


class InvalidToken(Exception):
    """The credential is malformed, forged, expired or for someone else."""


Via = Literal["bearer", "cookie", "api_key"]


@dataclass(frozen=True)
class Identity:
    """A verified caller, in the organisation its credential was issued for: the one caller type of the gateway's
    routes (which fill `via` and `expires_at`) and of every internal service's routes."""

    user_id: str
    org_id: str
    role: Role
    email: str | None = None
    scopes: frozenset[str] = frozenset({"read", "write"})
    session_id: str | None = None  # the refresh-token family of a login; None for an API key
    api_key_id: str | None = None  # set when the token was minted for an API key
    # The access JWT (for an API key, the short-lived JWT the auth service minted for it): what the gateway's
    # upstream calls carry to act as this caller; never logged.
    token: str = field(default="", repr=False)
    via: Via = "bearer"  # how the gateway received the credential
    expires_at: float | None = None  # epoch seconds after which `token` is no longer accepted

    @property
    def via_api_key(self) -> bool:
        return self.api_key_id is not None

    def has_role(self, role: Role) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[role]


def token_kid(token: str) -> str | None:
    try:
        header = extract_compact(token.encode()).headers()
    except (JoseError, ValueError) as exc:
        raise InvalidToken("malformed token") from exc
    kid = header.get("kid")
    return kid if isinstance(kid, str) else None


def verify_access_token(
    token: str, keys: KeySet, *, issuer: str, audience: str, now: int | None = None
) -> dict[str, Any]:
    """The verified claims of an access JWT, or InvalidToken. Pure: the keys come from the caller."""
    try:
        decoded = jwt.decode(token, keys, algorithms=ALGORITHMS)
        registry = jwt.JWTClaimsRegistry(
            now=now,
            leeway=LEEWAY_S,
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": audience},
            exp={"essential": True},
            sub={"essential": True},
        )
        registry.validate(decoded.claims)
    except (JoseError, ValueError) as exc:
        raise InvalidToken(getattr(exc, "description", None) or str(exc) or type(exc).__name__) from exc
    claims: dict[str, Any] = decoded.claims
    if claims.get("role") not in ROLE_RANK or not isinstance(claims.get("org"), str):
        raise InvalidToken("token lacks organisation or role")
    return claims


def identity_from_claims(claims: dict[str, Any], token: str, via: Via = "bearer") -> Identity:
    return Identity(
        user_id=str(claims["sub"]),
        org_id=str(claims["org"]),
        role=cast(Role, claims["role"]),
        email=claims.get("email"),
        scopes=frozenset(str(claims.get("scope", "read write")).split()),
        session_id=claims.get("sid"),
        api_key_id=claims.get("akid"),
        token=token,
        via=via,
        expires_at=float(claims["exp"]),
    )


# Reads the auth service's published keys (its JWKS document).
FetchJwks = Callable[[], Awaitable[dict[str, Any]]]


class JwksCache:
    """The auth service's public keys: refreshed when stale, or at once when a token names an unknown kid."""

    def __init__(
        self, fetch: FetchJwks, settings: ServiceSettings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._fetch = fetch
        self._max_age_s = settings.jwks_max_age_s
        self._min_refresh_s = settings.jwks_min_refresh_s
        self._clock = clock
        self._keys: KeySet | None = None
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()

    def _has(self, kid: str | None) -> bool:
        return self._keys is not None and any(key.kid == kid for key in self._keys)

    async def keys_for(self, kid: str | None) -> KeySet:
        """The key set holding `kid`, refreshed if needed; InvalidToken if no published key has it."""
        age = self._clock() - self._fetched_at
        if self._has(kid) and age < self._max_age_s:
            assert self._keys is not None
            return self._keys
        async with self._lock:
            age = self._clock() - self._fetched_at
            # Another request may have refreshed while we waited; an unknown kid refetches at most every min_refresh.
            if self._keys is None or age >= self._max_age_s or (not self._has(kid) and age >= self._min_refresh_s):
                try:
                    published = await self._fetch()
                except Exception:
                    if not self._has(kid):
                        raise
                    # The auth service does not answer: the keys it published stay good until it does (a 503 on
                    # every call would make its outage everyone's); asked again min_refresh from now, not per call.
                    self._fetched_at = self._clock() - self._max_age_s + self._min_refresh_s
                    log.warning("auth.jwks_refresh_failed_serving_cached_keys", kid=kid)
                else:
                    self._keys = KeySet.import_key_set(cast(Any, published))
                    self._fetched_at = self._clock()
        if not self._has(kid):
            raise InvalidToken("token signed by an unknown key")
        assert self._keys is not None
        return self._keys


class TokenVerifier:
    """Verifies access JWTs against the keys `fetch` reads (a JWKS), with the issuer, audience and key refresh of
    `settings`; one per app (`app.state.token_verifier`).

    A token whose signature checked is remembered for `cache_s` (its claims, by the exact token string), so a
    client sending the same token on every call pays the ES256 verification once, not per call (the predict
    path's largest CPU item in the gateway and the deployer, docs/decisions/deployer.md). A remembered token is
    still refused once it expires, and once its key left the JWKS (the key set is checked on every call).
    """

    def __init__(
        self,
        fetch: FetchJwks,
        settings: ServiceSettings,
        *,
        cache_s: float = 60.0,
        cache_size: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.jwks = JwksCache(fetch, settings)
        self.issuer = settings.jwt_issuer
        self.audience = settings.jwt_audience
        self._clock = clock
        self._verified: TTLCache[str, tuple[str | None, dict[str, Any]]] | None = (
            TTLCache(maxsize=cache_size, ttl=cache_s) if cache_s > 0 else None
        )
        self.signatures_checked = 0  # ES256 verifications run (the rest were remembered)

    async def claims(self, token: str) -> dict[str, Any]:
        """The verified claims (a fresh copy: callers may keep or change it); InvalidToken otherwise."""
        if self._verified is not None and (known := self._verified.get(token)) is not None:
            kid, claims = known
            if self._clock() <= claims["exp"] + LEEWAY_S:
                await self.jwks.keys_for(kid)  # InvalidToken once the key is gone from the JWKS
                return dict(claims)
            del self._verified[token]
        kid = token_kid(token)
        keys = await self.jwks.keys_for(kid)
        self.signatures_checked += 1
        claims = verify_access_token(token, keys, issuer=self.issuer, audience=self.audience, now=int(self._clock()))
        if self._verified is not None:
            self._verified[token] = (kid, claims)
        return dict(claims)

    async def identity(self, token: str) -> Identity:
        return identity_from_claims(await self.claims(token), token)


def install_token_verifier(app: FastAPI, verifier: TokenVerifier) -> TokenVerifier:
    app.state.token_verifier = verifier
    return verifier


@asynccontextmanager
async def open_token_verifier(app: FastAPI, settings: ServiceSettings) -> AsyncIterator[TokenVerifier]:
    """A verifier reading the auth service's JWKS over HTTP, for the lifespan of a service."""
    async with httpx.AsyncClient(
        base_url=settings.auth_url, timeout=httpx.Timeout(settings.dependency_timeout_s)
    ) as client:

        async def fetch() -> dict[str, Any]:
            try:
                response = await client.get("/.well-known/jwks.json")
                response.raise_for_status()
            except httpx.HTTPError as exc:
                raise Unavailable(f"cannot check credentials: auth service unreachable ({exc})") from None
            body: dict[str, Any] = response.json()
            return body

        yield install_token_verifier(app, TokenVerifier(fetch, settings))


def bearer_token(connection: HTTPConnection) -> str | None:
    scheme, _, value = connection.headers.get("authorization", "").partition(" ")
    value = value.strip()
    return value if scheme.lower() == "bearer" and value else None


async def caller_identity(connection: HTTPConnection) -> Identity:
    """The FastAPI dependency every internal route uses: 401 (or a 1008 close for a socket) without a valid token."""
    token = bearer_token(connection)
    try:
        if token is None:
            raise InvalidToken("missing bearer token")
        verifier: TokenVerifier = connection.app.state.token_verifier
        return await verifier.identity(token)
    except InvalidToken as exc:
        if connection.scope["type"] == "websocket":
            raise WebSocketException(WS_1008_POLICY_VIOLATION, f"unauthorized: {exc}") from None
        raise Unauthorized(f"invalid credentials: {exc}", {"www-authenticate": "Bearer"}) from None


def ensure_role(held: Role, needed: Role) -> None:
    """403 unless `held` ranks at least `needed`: the one role check (and message) of every service."""
    if ROLE_RANK[held] < ROLE_RANK[needed]:
        raise Forbidden(f"this needs the {needed} role in your organisation (you are {held})")


def require_role(
    role: Role, caller: Callable[..., Awaitable[Identity]] = caller_identity
) -> Callable[..., Awaitable[Identity]]:
    """A dependency: the caller (as the `caller` dependency finds them; the gateway passes its own), who must hold
    at least `role` in their organisation (403 otherwise)."""

    # Depends as a default, not in Annotated: this module's annotations are strings that FastAPI evaluates in its
    # globals, where the local `caller` is not.
    async def check(who: Identity = Depends(caller)) -> Identity:
        ensure_role(who.role, role)
        return who

    return check


CallerIdentity = Annotated[Identity, Depends(caller_identity)]
MemberIdentity = Annotated[Identity, Depends(require_role("member"))]
AdminIdentity = Annotated[Identity, Depends(require_role("admin"))]
