"""Auth routes of the gateway: sign-up, login, refresh, logout, profile, API keys, organisation members,
Sign in with Hugging Face. Thin: each forwards to the auth service through `upstream.py`.

Web sessions: a login or refresh with `"session": true` (and Sign in with HF) sets the HttpOnly cookies
`hp_access` (SameSite=Lax) and `hp_refresh` (SameSite=Strict, path /v1/auth) and the script-readable `hp_csrf`;
the JSON body then carries `csrf_token` and `expires_in` instead of the tokens, which stay out of reach of scripts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Body, Query, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, Field

from hubpulse_common.auth_schemas import ApiKeyCreate, LoginBody, MemberPut, ProfilePatch, SignupBody
from hubpulse_common.http import NO_NUL, ApiError, Unauthorized
from hubpulse_gateway.deps import (
    AccountLoginsDep,
    AdminUser,
    CurrentUser,
    MemberUser,
    OptionalUser,
    SecurityDep,
    UpstreamsDep,
    state_of,
)
from hubpulse_gateway.errors import BadSignInState, CsrfFailed, SignInNotCompleted
from hubpulse_gateway.security import ACCESS_COOKIE, CSRF_COOKIE, CSRF_HEADER, REFRESH_COOKIE
from hubpulse_gateway.upstream import UpstreamId

OAUTH_STATE_COOKIE = "hp_oauth_state"
REFRESH_PATH = "/v1/auth"


class RefreshBody(BaseModel):
    refresh_token: str | None = Field(default=None, max_length=512, description="omit to use the session cookie")


class TokenPair(BaseModel):
    access_token: str | None = None
    refresh_token: str | None = None
    token_type: str
    expires_in: int
    csrf_token: str | None = None


router = APIRouter(tags=["auth"])


@dataclass(frozen=True)
class _Cookie:
    name: str
    path: str
    samesite: Literal["lax", "strict"] = "lax"
    httponly: bool = True

    def set(self, response: Response, value: str, max_age: int, secure: bool) -> None:
        response.set_cookie(
            self.name,
            value,
            max_age=max_age,
            httponly=self.httponly,
            samesite=self.samesite,
            secure=secure,
            path=self.path,
        )

    def clear(self, response: Response) -> None:
        response.delete_cookie(self.name, path=self.path)


# Each session cookie, with the fields of the auth service's answer that hold its value and its max age.
SESSION_COOKIES = (
    (_Cookie(ACCESS_COOKIE, "/"), "access_token", "expires_in"),
    (_Cookie(REFRESH_COOKIE, REFRESH_PATH, "strict"), "refresh_token", "refresh_expires_in"),
    (_Cookie(CSRF_COOKIE, "/", "strict", httponly=False), "csrf_token", "refresh_expires_in"),
)
OAUTH_STATE = _Cookie(OAUTH_STATE_COOKIE, "/v1/auth/hf")


def _set_session(response: Response, tokens: dict[str, Any], secure: bool) -> dict[str, Any]:
    for cookie, value, lifetime in SESSION_COOKIES:
        cookie.set(response, tokens[value], int(tokens[lifetime]), secure)
    return {"token_type": "cookie", "expires_in": tokens["expires_in"], "csrf_token": tokens["csrf_token"]}


def _clear_session(response: Response) -> None:
    for cookie, _, _ in SESSION_COOKIES:
        cookie.clear(response)


def _public_tokens(tokens: dict[str, Any]) -> dict[str, Any]:
    return {k: tokens[k] for k in ("access_token", "refresh_token", "token_type", "expires_in")}


def _session_refresh(request: Request, body: RefreshBody | None) -> tuple[str, str | None]:
    """The refresh token from the body, else the cookie; a cookie needs the CSRF header too."""
    if body is not None and body.refresh_token:
        return body.refresh_token, None
    cookie = request.cookies.get(REFRESH_COOKIE)
    if not cookie:
        raise Unauthorized("no refresh token: send refresh_token or the session cookie")
    csrf = request.headers.get(CSRF_HEADER)
    if not csrf:
        raise CsrfFailed("a cookie session needs the X-CSRF-Token header")
    return cookie, csrf


@router.post("/v1/auth/signup", status_code=201, summary="Create an account (and its own organisation)")
async def signup(body: SignupBody, upstreams: UpstreamsDep) -> Any:
    return await upstreams.auth.json("POST", "/auth/signup", json=body.model_dump())


@router.post("/v1/auth/login", response_model=TokenPair, response_model_exclude_none=True, summary="Log in")
async def login(
    body: LoginBody, request: Request, response: Response, upstreams: UpstreamsDep, logins: AccountLoginsDep
) -> Any:
    await logins.refuse_locked(body.email)
    try:
        tokens = await upstreams.auth.json("POST", "/auth/login", json=body.model_dump())
    except ApiError as exc:
        if exc.status == 401:
            await logins.count_failure(body.email)
        raise
    if body.session:
        return _set_session(response, tokens, cookie_secure(request))
    return _public_tokens(tokens)


@router.post(
    "/v1/auth/refresh",
    response_model=TokenPair,
    response_model_exclude_none=True,
    summary="New token pair; the refresh token is spent (a reused one revokes its family)",
)
async def refresh(
    request: Request, response: Response, upstreams: UpstreamsDep, body: Annotated[RefreshBody | None, Body()] = None
) -> Any:
    token, csrf = _session_refresh(request, body)
    try:
        tokens = await upstreams.auth.json(
            "POST", "/auth/refresh", json={"refresh_token": token, "csrf_token": csrf}, retry=False
        )
    except ApiError as exc:
        if exc.status == 401 and csrf is not None:
            _clear_session(response)
        raise
    if csrf is not None:
        # A cookie session keeps its CSRF token across refreshes (the auth service checked it).
        return _set_session(response, {**tokens, "csrf_token": csrf}, cookie_secure(request))
    return _public_tokens(tokens)


@router.post("/v1/auth/logout", status_code=204, summary="Revoke this session's refresh tokens")
async def logout(
    request: Request, upstreams: UpstreamsDep, body: Annotated[RefreshBody | None, Body()] = None
) -> Response:
    token, csrf = _session_refresh(request, body)
    await upstreams.auth.request("POST", "/auth/logout", json={"refresh_token": token, "csrf_token": csrf})
    response = Response(status_code=204)
    _clear_session(response)
    return response


@router.get("/v1/me", summary="Your profile, organisations and role")
async def me(user: CurrentUser, upstreams: UpstreamsDep) -> Any:
    return await upstreams.auth.json("GET", "/me", principal=user)


@router.patch("/v1/me", summary="Change name, email or password (the password needs current_password)")
async def patch_me(body: ProfilePatch, user: CurrentUser, upstreams: UpstreamsDep) -> Any:
    return await upstreams.auth.json("PATCH", "/me", principal=user, json=body.model_dump(exclude_none=True))


@router.post("/v1/api-keys", status_code=201, summary="Create an API key; the key is shown only in this answer")
async def create_api_key(body: ApiKeyCreate, user: MemberUser, upstreams: UpstreamsDep) -> Any:
    return await upstreams.auth.json("POST", "/api-keys", principal=user, json=body.model_dump())


@router.get("/v1/api-keys", summary="Your API keys in this organisation (never the secrets)")
async def list_api_keys(user: CurrentUser, upstreams: UpstreamsDep) -> Any:
    return await upstreams.auth.json("GET", "/api-keys", principal=user)


@router.delete("/v1/api-keys/{key_id}", status_code=204, summary="Revoke an API key")
async def revoke_api_key(
    key_id: UpstreamId,
    user: MemberUser,
    upstreams: UpstreamsDep,
    security: SecurityDep,
) -> Response:
    await upstreams.auth.request("DELETE", f"/api-keys/{key_id}", principal=user)
    security.api_keys.evict(key_id)
    return Response(status_code=204)


@router.get("/v1/org/members", summary="Members of your organisation and their roles")
async def list_members(user: CurrentUser, upstreams: UpstreamsDep) -> Any:
    return await upstreams.auth.json("GET", "/org/members", principal=user)


@router.put("/v1/org/members", summary="Add a member to your organisation or change their role (admin)")
async def put_member(body: MemberPut, user: AdminUser, upstreams: UpstreamsDep) -> Any:
    return await upstreams.auth.json("PUT", "/org/members", principal=user, json=body.model_dump())


@router.get("/v1/auth/hf/login", summary="Sign in with Hugging Face: redirects to the provider")
async def hf_login(
    upstreams: UpstreamsDep,
    request: Request,
    user: OptionalUser,
    return_to: Annotated[str, Query(max_length=512, pattern=NO_NUL)] = "/",
) -> RedirectResponse:
    """Signed in (a login session), the Hugging Face account is linked to yours; anonymous, it signs you in."""
    linking = user if user is not None and user.via != "api_key" else None
    body = {"return_to": _local_path(return_to)}
    start = await upstreams.auth.json("POST", "/oauth/hf/start", json=body, principal=linking)
    response = RedirectResponse(start["authorize_url"], status_code=302)
    # Binds the flow to this browser: a callback with someone else's state is refused (login CSRF).
    OAUTH_STATE.set(response, start["state"], 600, cookie_secure(request))
    return response


@router.get("/v1/auth/hf/callback", summary="Sign in with Hugging Face: the provider redirects back here")
async def hf_callback(
    request: Request,
    upstreams: UpstreamsDep,
    state: Annotated[str, Query(max_length=256)],
    code: Annotated[str | None, Query(max_length=2048)] = None,
    error: Annotated[str | None, Query(max_length=256)] = None,
    error_description: Annotated[str | None, Query(max_length=1024)] = None,
) -> Response:
    """Hugging Face sends `code`, or (the user declined, or it failed) `error` and `error_description` instead
    (RFC 6749 4.1.2.1)."""
    if request.cookies.get(OAUTH_STATE_COOKIE) != state:
        raise BadSignInState("sign-in state does not match this browser; start again")
    if error is not None or code is None:
        reason = ": ".join(part for part in (error or "no code", error_description) if part)
        raise SignInNotCompleted(f"Hugging Face did not sign you in ({reason}); start again")
    tokens = await upstreams.auth.json("POST", "/oauth/hf/finish", json={"code": code, "state": state})
    response = RedirectResponse(_local_path(tokens.get("return_to") or "/"), status_code=302)
    _set_session(response, tokens, cookie_secure(request))
    OAUTH_STATE.clear(response)
    return response


def _local_path(target: str) -> str:
    """Only same-site paths after sign-in: no open redirect."""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


def cookie_secure(request: Request) -> bool:
    return state_of(request).security.settings.cookie_secure
