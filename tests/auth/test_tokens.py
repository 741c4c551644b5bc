"""Access tokens: forged, misdirected and expired ones are refused; key rotation keeps old tokens valid."""

from __future__ import annotations

import base64
import json
import time

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from auth.conftest import Stack
from hubpulse_auth.service import AccessGrant, access_claims, sign
from hubpulse_gateway.security import token_kid


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


async def _me(stack: Stack, token: str) -> int:
    async with stack.client() as client:
        return (await client.get("/v1/me", headers={"authorization": f"Bearer {token}"})).status_code


async def test_valid_token_is_accepted(stack: Stack) -> None:
    user = await stack.user("valid@example.com")
    async with stack.client() as client:
        me = await client.get("/v1/me", headers=user["headers"])
    assert me.status_code == 200, me.text
    assert me.json()["email"] == "valid@example.com"
    assert me.json()["role"] == "admin"
    assert set(user) >= {"access_token", "refresh_token", "token_type", "expires_in"}


@pytest.mark.parametrize("case", ["alg_none", "wrong_key", "wrong_audience", "wrong_issuer", "expired", "tampered"])
async def test_bad_tokens_are_refused(stack: Stack, case: str) -> None:
    user = await stack.user(f"victim-{case.replace('_', '-')}@example.com")
    real = jwt.decode(user["access_token"], ECKey.import_key((await stack.keyring().jwks())["keys"][0]))
    claims, header = dict(real.claims), dict(real.header)
    key = await stack.keyring().signing_key()
    if case == "alg_none":
        token = f"{_b64({'alg': 'none', 'kid': header['kid'], 'typ': 'JWT'})}.{_b64(claims)}."
    elif case == "wrong_key":
        forged = ECKey.generate_key("P-256", parameters={"kid": header["kid"]}, private=True)
        token = jwt.encode(header, claims, forged)
    elif case == "wrong_audience":
        token = jwt.encode(header, {**claims, "aud": "someone-else"}, key)
    elif case == "wrong_issuer":
        token = jwt.encode(header, {**claims, "iss": "https://evil.example"}, key)
    elif case == "expired":
        token = jwt.encode(header, {**claims, "iat": int(time.time()) - 3600, "exp": int(time.time()) - 60}, key)
    else:
        head, _, signature = user["access_token"].split(".")
        token = f"{head}.{_b64({**claims, 'role': 'admin', 'org': 'another-org'})}.{signature}"
    assert await _me(stack, user["access_token"]) == 200
    assert await _me(stack, token) == 401


async def test_rotation_keeps_old_tokens_valid_and_new_kid_is_fetched(stack: Stack) -> None:
    before = await stack.user("rotate@example.com")
    old_kid = token_kid(before["access_token"])
    await stack.keyring().rotate()
    after = await stack.user("rotate@example.com")
    new_kid = token_kid(after["access_token"])
    assert new_kid != old_kid
    # The gateway has only the old key cached: the unknown kid makes it refetch the JWKS.
    assert await _me(stack, after["access_token"]) == 200
    assert await _me(stack, before["access_token"]) == 200
    kids = {k["kid"] for k in (await stack.keyring().jwks())["keys"]}
    assert {old_kid, new_kid} <= kids
    assert all("d" not in k for k in (await stack.keyring().jwks())["keys"]), "private halves must not be published"


async def test_token_of_a_key_retired_beyond_its_grace_is_refused(stack: Stack) -> None:
    user = await stack.user("retired@example.com")
    kid = token_kid(user["access_token"])
    key = await stack.keyring().signing_key()
    # Pretend this key was retired long ago: it leaves the JWKS, and a token it signs no longer verifies.
    await stack.keyring().rotate()
    await stack.pool.execute("UPDATE auth_signing_keys SET retired_at = now() - interval '1 day' WHERE kid = $1", kid)
    grant = AccessGrant(user_id="u", org_id="o", role="admin", email=None, session_id="s")
    settings = stack.auth_settings
    token = sign(access_claims(grant, issuer=settings.jwt_issuer, audience=settings.jwt_audience, ttl_s=600), key)
    async with stack.client() as client:
        response = await client.get("/v1/me", headers={"authorization": f"Bearer {token}"})
    assert response.status_code == 401
