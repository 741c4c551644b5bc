"""HTTP endpoints of the auth service; the gateway forwards `/v1/auth/*`, `/v1/me`, `/v1/api-keys` here.

Callers authenticate with `Authorization: Bearer <access JWT>` (the gateway forwards the caller's; for an API key,
the JWT `/internal/api-keys/verify` minted for it), verified by the shared `hubpulse_common.identity` dependency
against this service's own key ring.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, Path, Request, Response
from limits import parse

from hubpulse_auth import repository as repo
from hubpulse_auth import tokens
from hubpulse_auth.deps import AuthDep, AuthState
from hubpulse_auth.errors import (
    BadSignInState,
    EmailTaken,
    HfAlreadyLinked,
    InvalidCredentials,
    LinkRequired,
    SessionRevoked,
    TooManyFailedLogins,
    WrongPassword,
)
from hubpulse_auth.oauth import new_flow
from hubpulse_auth.schemas import (
    ApiKeyCreate,
    HfFinish,
    HfStart,
    KeyCheck,
    LoginBody,
    MemberPut,
    ProfilePatch,
    RefreshBody,
    SignupBody,
)
from hubpulse_auth.service import (
    AccessGrant,
    access_claims,
    api_key_role,
    api_key_string,
    check_password_strength,
    hash_password,
    new_secret,
    normalise_email,
    parse_api_key,
    password_matches,
    secrets_equal,
    sha256_hex,
    sign,
    validate_scopes,
)
from hubpulse_common.http import Conflict, Forbidden, NotFound, Unauthorized
from hubpulse_common.identity import (
    AdminIdentity,
    CallerIdentity,
    Identity,
    MemberIdentity,
    bearer_token,
    caller_identity,
)

router = APIRouter()


async def verify_api_key(state: AuthState, key: str) -> dict[str, Any] | None:
    parsed = parse_api_key(key)
    if parsed is None:
        return None
    async with state.pool.acquire() as conn:
        row = await repo.live_api_key(conn, parsed[0])
    if row is None or not secrets_equal(row["secret_hash"], sha256_hex(parsed[1])):
        return None
    row["role"] = api_key_role(row["role"], row["scopes"])
    return row


async def refuse_locked_account(state: AuthState, email: str) -> None:
    """429 while an account has used up its failed attempts (checked before any password work)."""
    limit = parse(state.settings.login_rate_limit)
    if not await state.limiter.test(limit, "login", email):
        reset_at, _ = await state.limiter.get_window_stats(limit, "login", email)
        retry_after = max(1, int(reset_at - time.time()) + 1)
        raise TooManyFailedLogins(
            f"too many failed login attempts for this account; retry in {retry_after} s", retry_after
        )


async def count_failed_login(state: AuthState, email: str) -> None:
    """Only wrong passwords count: the owner logging in correctly never locks their own account (audit L4).
    Per client IP, the gateway limits every attempt."""
    await state.limiter.hit(parse(state.settings.login_rate_limit), "login", email)


def _profile(user: dict[str, Any], orgs: list[dict[str, Any]], org_id: str | None, role: str | None) -> dict[str, Any]:
    return {
        "id": str(user["id"]),
        "email": user["email"],
        "name": user["name"],
        "hf_username": user["hf_username"],
        "created_at": user["created_at"].isoformat(),
        "org_id": org_id,
        "role": role,
        "orgs": orgs,
    }


@router.post("/auth/signup", status_code=201)
async def signup(body: SignupBody, state: AuthDep) -> dict[str, Any]:
    email = normalise_email(body.email)
    check_password_strength(body.password, state.settings.min_password_length)
    password_hash = await state.hashing.run(hash_password, body.password)
    name = body.name or email.split("@")[0]
    async with state.pool.acquire() as conn:
        user = await repo.create_user(
            conn, email=email, name=name, password_hash=password_hash, org_name=f"{name}'s organisation"
        )
        if user is None:
            raise EmailTaken("an account with this email exists; log in instead")
        orgs = await repo.memberships(conn, str(user["id"]))
    return _profile(user, orgs, orgs[0]["org_id"], orgs[0]["role"])


@router.post("/auth/login")
async def login(body: LoginBody, state: AuthDep) -> dict[str, Any]:
    email = normalise_email(body.email)
    await refuse_locked_account(state, email)
    async with state.pool.acquire() as conn:
        user = await repo.user_by(conn, "email", email)
    ok = await state.hashing.run(password_matches, user["password_hash"] if user else None, body.password)
    if user is None or not ok:
        await count_failed_login(state, email)
        raise InvalidCredentials("wrong email or password")
    async with state.pool.acquire() as conn:
        orgs = await repo.memberships(conn, str(user["id"]))
        chosen = next((o for o in orgs if o["org_id"] == body.org_id), None) if body.org_id else orgs[0]
        if chosen is None:
            raise Forbidden("you are not a member of that organisation")
        async with conn.transaction():
            return await tokens.issue(
                conn,
                state.keys,
                state.settings,
                user=user,
                org_id=chosen["org_id"],
                role=chosen["role"],
                session=body.session,
            )


@router.post("/auth/refresh")
async def refresh(body: RefreshBody, state: AuthDep) -> dict[str, Any]:
    return await tokens.rotate(state.pool, state.keys, state.settings, body.refresh_token, body.csrf_token)


@router.post("/auth/logout", status_code=204)
async def logout(body: RefreshBody, state: AuthDep) -> Response:
    await tokens.revoke(state.pool, body.refresh_token, body.csrf_token)
    return Response(status_code=204)


@router.get("/.well-known/jwks.json")
async def jwks(state: AuthDep, response: Response) -> dict[str, Any]:
    response.headers["cache-control"] = "public, max-age=60"
    return await state.keys.jwks()


@router.get("/internal/sessions/check")
async def session_check(who: CallerIdentity, state: AuthDep) -> dict[str, bool]:
    """200 while the login session of the presented access token is active, else 401 (the gateway asks, and caches
    the answer a few seconds: a logout or password change ends the session's access tokens too)."""
    if who.session_id is not None:
        async with state.pool.acquire() as conn:
            if not await repo.family_active(conn, who.session_id):
                raise SessionRevoked("this session ended (logout or password change); log in again")
    return {"active": True}


@router.get("/me")
async def me(who: CallerIdentity, state: AuthDep) -> dict[str, Any]:
    async with state.pool.acquire() as conn:
        user = await repo.user_by(conn, "id", uuid.UUID(who.user_id))
        if user is None:
            raise Unauthorized("this account no longer exists")
        orgs = await repo.memberships(conn, who.user_id)
    return _profile(user, orgs, who.org_id, who.role)


@router.patch("/me")
async def patch_me(body: ProfilePatch, who: CallerIdentity, state: AuthDep) -> dict[str, Any]:
    if who.via_api_key:
        raise Forbidden("change your profile from a login session, not with an API key")
    changes: dict[str, Any] = {}
    if body.name is not None:
        changes["name"] = body.name
    if body.email is not None:
        changes["email"] = normalise_email(body.email)
    async with state.pool.acquire() as conn:
        user = await repo.user_by(conn, "id", uuid.UUID(who.user_id))
    if user is None:
        raise Unauthorized("this account no longer exists")
    if changes.get("email") == user["email"]:
        changes.pop("email")
    # Changing how you log in needs the current password (when the account has one).
    changes_login = body.password is not None or "email" in changes
    if (
        changes_login
        and user["password_hash"] is not None
        and not await state.hashing.run(password_matches, user["password_hash"], body.current_password or "")
    ):
        raise WrongPassword("current_password is missing or wrong")
    if body.password is not None:
        check_password_strength(body.password, state.settings.min_password_length)
        changes["password_hash"] = await state.hashing.run(hash_password, body.password)
    if "email" in changes:
        changes["email_verified"] = False  # a new address is nobody's proof of anything
    async with state.pool.acquire() as conn, conn.transaction():
        updated = await repo.update_user(conn, who.user_id, changes)
        if updated is None:
            raise EmailTaken("another account uses this email")
        if changes_login:
            # whoever else holds a session (a thief, an old device) is logged out; the caller's session stays
            await repo.revoke_families_of(conn, who.user_id, keep=who.session_id)
        orgs = await repo.memberships(conn, who.user_id)
    return _profile(updated, orgs, who.org_id, who.role)


def _refuse_api_key(who: Identity) -> None:
    """API keys are managed from a login session only: a leaked key cannot mint keys that outlive its revocation."""
    if who.via_api_key:
        raise Forbidden("manage API keys from a login session, not with an API key")


@router.post("/api-keys", status_code=201)
async def create_api_key(body: ApiKeyCreate, who: MemberIdentity, state: AuthDep) -> dict[str, Any]:
    _refuse_api_key(who)
    scopes = validate_scopes(body.scopes)
    key_id, secret = uuid.uuid4().hex[:16], new_secret()
    async with state.pool.acquire() as conn:
        row = await repo.add_api_key(conn, key_id, who.user_id, who.org_id, body.name, scopes, sha256_hex(secret))
    return {**_key_view(row), "key": api_key_string(key_id, secret)}


@router.get("/api-keys")
async def list_api_keys(who: CallerIdentity, state: AuthDep) -> dict[str, Any]:
    async with state.pool.acquire() as conn:
        rows = await repo.api_keys_of(conn, who.user_id, who.org_id)
    return {"items": [_key_view(r) for r in rows]}


@router.delete("/api-keys/{key_id}", status_code=204)
async def revoke_api_key(key_id: Annotated[str, Path(max_length=64)], who: MemberIdentity, state: AuthDep) -> Response:
    _refuse_api_key(who)
    async with state.pool.acquire() as conn:
        if not await repo.revoke_api_key(conn, key_id, who.user_id, who.org_id):
            raise NotFound("no such API key of yours")
    return Response(status_code=204)


def _key_view(row: dict[str, Any]) -> dict[str, Any]:
    last_used = row.get("last_used_at")
    return {
        "id": row["id"],
        "name": row["name"],
        "scopes": list(row["scopes"]),
        "created_at": row["created_at"].isoformat(),
        "last_used_at": last_used.isoformat() if last_used else None,
    }


@router.post("/internal/api-keys/verify")
async def verify_key(body: KeyCheck, state: AuthDep) -> dict[str, Any]:
    row = await verify_api_key(state, body.key)
    if row is None:
        raise Unauthorized("invalid or revoked API key")
    ttl_s = state.settings.api_key_token_ttl_s
    grant = AccessGrant(
        row["user_id"],
        row["org_id"],
        row["role"],
        row["email"],
        None,
        api_key_id=row["id"],
        scopes=tuple(row["scopes"]),
    )
    claims = access_claims(grant, issuer=state.settings.jwt_issuer, audience=state.settings.jwt_audience, ttl_s=ttl_s)
    return {
        # what the gateway forwards to internal services as this key's caller, until it verifies the key again
        "access_token": sign(claims, await state.keys.signing_key()),
        "expires_in": ttl_s,
        "key_id": row["id"],
        "user_id": row["user_id"],
        "org_id": row["org_id"],
        "role": row["role"],
        "scopes": list(row["scopes"]),
        "email": row["email"],
    }


@router.get("/org/members")
async def members(who: CallerIdentity, state: AuthDep) -> dict[str, Any]:
    async with state.pool.acquire() as conn:
        return {"org_id": who.org_id, "items": await repo.org_members(conn, who.org_id)}


@router.put("/org/members")
async def put_member(body: MemberPut, who: AdminIdentity, state: AuthDep) -> dict[str, Any]:
    if who.via_api_key:
        raise Forbidden("managing members needs a login session")
    email = normalise_email(body.email)
    async with state.pool.acquire() as conn:
        user = await repo.user_by(conn, "email", email)
        if user is None:
            raise NotFound("no account with this email; ask them to sign up first")
        if str(user["id"]) == who.user_id and body.role != "admin":
            raise Conflict("you cannot lower your own role")
        await repo.put_member(conn, who.org_id, str(user["id"]), body.role)
        return {"org_id": who.org_id, "items": await repo.org_members(conn, who.org_id)}


async def optional_login(request: Request) -> Identity | None:
    """The signed-in caller (a login session, not an API key), or None when anonymous or the token is bad."""
    if bearer_token(request) is None:
        return None
    who = await caller_identity(request)
    return None if who.via_api_key else who


@router.post("/oauth/hf/start")
async def hf_start(
    body: HfStart, state: AuthDep, linking: Annotated[Identity | None, Depends(optional_login)]
) -> dict[str, str]:
    """Start Sign in with HF; started from a login session, the HF identity is linked to that account."""
    flow_state, verifier, nonce = new_flow()
    url = await state.hf.authorize_url(flow_state, verifier, nonce)
    async with state.pool.acquire() as conn:
        link = linking.user_id if linking is not None else None
        await repo.add_oauth_state(conn, flow_state, verifier, nonce, body.return_to, link)
    return {"authorize_url": url, "state": flow_state}


@router.post("/oauth/hf/finish")
async def hf_finish(body: HfFinish, state: AuthDep) -> dict[str, Any]:
    async with state.pool.acquire() as conn:
        flow = await repo.take_oauth_state(conn, body.state, dt.timedelta(minutes=10))
    if flow is None:
        raise BadSignInState("unknown or expired sign-in attempt; start again")
    claims = await state.hf.identity(body.code, flow["code_verifier"], flow["nonce"])
    link = flow.get("link_user_id")
    user = await _hf_user(state, claims, str(link) if link is not None else None)
    async with state.pool.acquire() as conn:
        orgs = await repo.memberships(conn, str(user["id"]))
        async with conn.transaction():
            issued = await tokens.issue(
                conn,
                state.keys,
                state.settings,
                user=user,
                org_id=orgs[0]["org_id"],
                role=orgs[0]["role"],
                session=True,
            )
    return {**issued, "return_to": flow["return_to"]}


async def _hf_user(state: AuthState, claims: dict[str, Any], link_user_id: str | None) -> dict[str, Any]:
    """The account of this Hugging Face identity: found by subject; else the signed-in account that started the
    flow; else the account with the same email, only if both sides verified it; else a new one.

    An account whose email was never proven is not linked by email (pre-account takeover: anyone can sign up with
    someone else's address and a password of their own): 409, sign in with the password and link from there."""
    sub = str(claims["sub"])
    username = claims.get("preferred_username")
    email = normalise_email(claims["email"]) if claims.get("email") and claims.get("email_verified") else None
    link = {"hf_sub": sub, "hf_username": username}
    async with state.pool.acquire() as conn:
        user = await repo.user_by(conn, "hf_sub", sub)
        if user is not None and link_user_id is not None and str(user["id"]) != link_user_id:
            raise HfAlreadyLinked("this Hugging Face account is linked to another account")
        if user is None and link_user_id is not None:
            user = await repo.update_user(conn, link_user_id, link)
        elif user is None and email is not None and (by_email := await repo.user_by(conn, "email", email)) is not None:
            if not by_email["email_verified"]:
                raise LinkRequired(
                    "an account with this email exists; sign in with its password, then use Sign in with Hugging "
                    "Face from that session to link the two",
                )
            user = await repo.update_user(conn, str(by_email["id"]), link)
        if user is None:
            name = cast(str, claims.get("name") or username or "Hugging Face user")
            user = await repo.create_user(
                conn,
                email=email,
                name=name,
                password_hash=None,
                org_name=f"{name}'s organisation",
                hf_sub=sub,
                hf_username=username,
                email_verified=email is not None,
            )
    if user is None:
        raise Conflict("this Hugging Face account could not be linked; try again")
    return user
