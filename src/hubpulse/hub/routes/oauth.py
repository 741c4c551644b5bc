"""A local OpenID Connect provider shaped like huggingface.co's "Sign in with HF", for offline sign-in and tests.

`/.well-known/openid-configuration`, `GET /oauth/authorize` (authorization code, PKCE S256 required; consents
at once for the user named by `login_hint`, default `hubpulse-demo`), `POST /oauth/token`, `GET /oauth/userinfo`,
`GET /oauth/jwks`. Id tokens are RS256 with a key made when the app starts. Any client id is accepted; a code
is bound to its client, redirect URI and PKCE challenge, and works once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Request
from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.responses import RedirectResponse, Response

from hubpulse.hub.responses import json_response

router = APIRouter()
CODE_TTL_S = 300
TOKEN_TTL_S = 3600


@dataclass
class Grant:
    client_id: str
    redirect_uri: str
    challenge: str
    nonce: str | None
    scope: str
    username: str
    issued_at: float = field(default_factory=time.monotonic)


@dataclass
class Provider:
    key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048, parameters={"kid": "replay-hub-1"}))
    codes: dict[str, Grant] = field(default_factory=dict)
    tokens: dict[str, Grant] = field(default_factory=dict)


def provider_of(request: Request) -> Provider:
    state = request.app.state
    if not hasattr(state, "oidc"):
        state.oidc = Provider()
    provider: Provider = state.oidc
    return provider


def issuer_of(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def oauth_error(code: str, message: str, status: int = 400) -> Response:
    return json_response({"error": code, "error_description": message}, status)


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")


def user_claims(username: str, scope: str) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "sub": hashlib.sha256(username.encode()).hexdigest()[:24],
        "preferred_username": username,
        "name": username.replace("-", " ").title(),
        "profile": f"https://huggingface.co/{username}",
    }
    if "email" in scope.split():
        claims.update(email=f"{username}@users.replay-hub.example.com", email_verified=True)
    return claims


@router.get("/.well-known/openid-configuration")
def configuration(request: Request) -> Response:
    issuer = issuer_of(request)
    return json_response(
        {
            "issuer": issuer,
            "authorization_endpoint": f"{issuer}/oauth/authorize",
            "token_endpoint": f"{issuer}/oauth/token",
            "userinfo_endpoint": f"{issuer}/oauth/userinfo",
            "jwks_uri": f"{issuer}/oauth/jwks",
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code"],
            "code_challenge_methods_supported": ["S256"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "profile", "email"],
            "subject_types_supported": ["public"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        }
    )


@router.get("/oauth/jwks")
def jwks(request: Request) -> Response:
    return json_response({"keys": [provider_of(request).key.as_dict(private=False, use="sig", alg="RS256")]})


@router.get("/oauth/authorize", response_model=None)
def authorize(request: Request) -> Response:
    q = request.query_params
    redirect_uri, client_id = q.get("redirect_uri"), q.get("client_id")
    if not redirect_uri or not client_id:
        return oauth_error("invalid_request", "client_id and redirect_uri are required")
    if q.get("response_type") != "code":
        return oauth_error("unsupported_response_type", "only response_type=code")
    if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
        return oauth_error("invalid_request", "PKCE with code_challenge_method=S256 is required")
    code = secrets.token_urlsafe(24)
    provider_of(request).codes[code] = Grant(
        client_id=client_id,
        redirect_uri=redirect_uri,
        challenge=q["code_challenge"],
        nonce=q.get("nonce"),
        scope=q.get("scope", "openid"),
        username=q.get("login_hint") or "hubpulse-demo",
    )
    params = {"code": code, **({"state": q["state"]} if "state" in q else {})}
    sep = "&" if "?" in redirect_uri else "?"
    return RedirectResponse(f"{redirect_uri}{sep}{urlencode(params)}", status_code=302)


def _client_id(request: Request, form: dict[str, str]) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(value).decode().split(":", 1)[0]
        except ValueError:
            return None
    return form.get("client_id")


@router.post("/oauth/token")
async def token(request: Request) -> Response:
    # Parsed by hand: Starlette's form parser needs python-multipart, which the Hub does not otherwise use.
    form = dict(parse_qsl((await request.body()).decode()))
    if form.get("grant_type") != "authorization_code":
        return oauth_error("unsupported_grant_type", "only authorization_code")
    provider = provider_of(request)
    grant = provider.codes.pop(form.get("code", ""), None)
    if grant is None or time.monotonic() - grant.issued_at > CODE_TTL_S:
        return oauth_error("invalid_grant", "unknown, used or expired code")
    if _client_id(request, form) != grant.client_id or form.get("redirect_uri") != grant.redirect_uri:
        return oauth_error("invalid_grant", "code issued to another client or redirect_uri")
    if not hmac.compare_digest(s256(form.get("code_verifier", "")), grant.challenge):
        return oauth_error("invalid_grant", "PKCE code_verifier does not match the code_challenge")
    access_token = secrets.token_urlsafe(32)
    provider.tokens[access_token] = grant
    now = int(time.time())
    claims = {
        **user_claims(grant.username, grant.scope),
        "iss": issuer_of(request),
        "aud": grant.client_id,
        "iat": now,
        "exp": now + TOKEN_TTL_S,
        **({"nonce": grant.nonce} if grant.nonce else {}),
    }
    id_token = jwt.encode({"alg": "RS256", "kid": provider.key.kid}, claims, provider.key)
    return json_response(
        {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": TOKEN_TTL_S,
            "scope": grant.scope,
            "id_token": id_token,
        },
        headers={"cache-control": "no-store"},
    )


@router.get("/oauth/userinfo")
def userinfo(request: Request) -> Response:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    grant = provider_of(request).tokens.get(value.strip()) if scheme.lower() == "bearer" else None
    if grant is None:
        return oauth_error("invalid_token", "unknown access token", 401)
    return json_response(user_claims(grant.username, grant.scope))
