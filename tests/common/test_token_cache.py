"""Verified access tokens are remembered (one ES256 check per token, not per call) without outliving their expiry
or their key."""

from __future__ import annotations

from typing import Any

import pytest

from hubpulse_auth.service import AccessGrant, access_claims, new_signing_key, sign
from hubpulse_common.identity import LEEWAY_S, InvalidToken, TokenVerifier
from hubpulse_common.settings import ServiceSettings

ISSUER, AUDIENCE = "hubpulse-auth", "hubpulse-api"


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _setup(now: float) -> tuple[TokenVerifier, Clock, dict[str, Any], str]:
    key = new_signing_key()
    published: dict[str, Any] = {"keys": [key.as_dict(private=False)]}

    async def fetch() -> dict[str, Any]:
        return published

    clock = Clock(now)
    # max_age 0: the key set is read again on every call, so a withdrawn key is noticed at once
    settings = ServiceSettings(jwt_issuer=ISSUER, jwt_audience=AUDIENCE, jwks_max_age_s=0, jwks_min_refresh_s=0)
    verifier = TokenVerifier(fetch, settings, clock=clock)
    grant = AccessGrant("user-1", "org-1", "member", None, "session-1")
    token = sign(access_claims(grant, issuer=ISSUER, audience=AUDIENCE, ttl_s=600, now=int(now)), key)
    return verifier, clock, published, token


async def test_a_token_is_checked_once_then_remembered() -> None:
    verifier, _, _, token = _setup(1_900_000_000)
    first = await verifier.claims(token)
    first["role"] = "admin"  # a caller changing its copy changes nothing for the next
    again = await verifier.claims(token)
    assert verifier.signatures_checked == 1
    assert again["sub"] == "user-1"
    assert again["role"] == "member"


async def test_a_remembered_token_is_refused_after_its_expiry() -> None:
    verifier, clock, _, token = _setup(1_900_000_000)
    await verifier.claims(token)
    clock.now += 600 + LEEWAY_S + 1
    with pytest.raises(InvalidToken):
        await verifier.claims(token)


async def test_a_remembered_token_is_refused_once_its_key_leaves_the_jwks() -> None:
    verifier, _, published, token = _setup(1_900_000_000)
    await verifier.claims(token)
    published["keys"] = [new_signing_key().as_dict(private=False)]
    with pytest.raises(InvalidToken):
        await verifier.claims(token)


async def test_the_published_keys_stay_good_while_the_auth_service_is_down_and_are_asked_for_again_later() -> None:
    """Security audit L7: keys older than jwks_max_age_s were refetched, and an auth service that did not answer
    made every call everywhere a 503, each waiting out the timeout behind one lock."""
    key = new_signing_key()
    published: dict[str, Any] = {"keys": [key.as_dict(private=False)]}
    down = {"now": False}
    asked = []

    async def fetch() -> dict[str, Any]:
        asked.append(clock.now)
        if down["now"]:
            raise ConnectionError("auth: connection refused")
        return published

    clock = Clock(1_900_000_000)
    settings = ServiceSettings(jwt_issuer=ISSUER, jwt_audience=AUDIENCE, jwks_max_age_s=300, jwks_min_refresh_s=30)
    verifier = TokenVerifier(fetch, settings, cache_s=0, clock=clock)
    verifier.jwks._clock = clock  # the key cache's own clock (monotonic in production)
    grant = AccessGrant("user-1", "org-1", "member", None, "session-1")
    token = sign(access_claims(grant, issuer=ISSUER, audience=AUDIENCE, ttl_s=3600, now=int(clock.now)), key)
    assert (await verifier.claims(token))["sub"] == "user-1"
    down["now"] = True
    clock.now += 301  # stale: refreshed, and the auth service does not answer
    assert (await verifier.claims(token))["sub"] == "user-1"
    clock.now += 10  # within min_refresh of the failed try: not asked again
    assert (await verifier.claims(token))["sub"] == "user-1"
    assert len(asked) == 2
    clock.now += 25  # past it: asked again (still down, still served)
    assert (await verifier.claims(token))["sub"] == "user-1"
    assert len(asked) == 3
    # a key the cache never had is not made up: the outage is the answer for it
    other = new_signing_key()
    stranger = sign(access_claims(grant, issuer=ISSUER, audience=AUDIENCE, ttl_s=3600, now=int(clock.now)), other)
    clock.now += 31
    with pytest.raises(ConnectionError):
        await verifier.claims(stranger)
