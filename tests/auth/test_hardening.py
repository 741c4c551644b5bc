"""The auth findings of the security audit (H5, H7, M2, M4, M5, M6, L4), each against the real auth service and
gateway: bounded password hashing, no trust in identity headers, body limits, API keys that cannot mint keys,
sessions that end on logout and password change, no Sign in with HF linking by an unproven email, and a lockout
that counts only failures."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qsl, urlsplit

import httpx

from auth.conftest import PASSWORD, Stack, raw_post, security_gateway, serving
from hubpulse_auth.app import create_app as create_auth_app


async def test_concurrent_password_hashing_is_bounded_with_a_503_beyond_it(stack: Stack) -> None:
    # one 64 MiB argon2 run at a time, and a short wait for it: a burst of signups cannot exhaust the memory
    settings = stack.auth_settings.model_copy(update={"hash_memory_budget_mib": 64, "hash_wait_s": 0.05})
    async with serving(create_auth_app(settings)) as auth_url, httpx.AsyncClient(base_url=auth_url) as client:
        answers = await asyncio.gather(
            *(
                client.post("/auth/signup", json={"email": f"burst{n}@example.com", "password": PASSWORD}, timeout=30)
                for n in range(8)
            )
        )
    statuses = sorted(a.status_code for a in answers)
    assert 201 in statuses, statuses
    assert 503 in statuses, statuses
    assert set(statuses) <= {201, 503}, statuses
    busy = next(a for a in answers if a.status_code == 503)
    assert busy.json()["error"]["code"] == "busy"
    assert int(busy.headers["retry-after"]) >= 1


async def test_the_auth_service_believes_no_identity_header(stack: Stack) -> None:
    user = await stack.user("headers@example.com")
    async with stack.client() as client:
        me = (await client.get("/v1/me", headers=user["headers"])).json()
    forged = {"x-hubpulse-user": me["id"], "x-hubpulse-org": me["org_id"], "x-hubpulse-role": "admin"}
    async with httpx.AsyncClient(base_url=stack.auth) as direct:
        assert (await direct.get("/me", headers=forged)).status_code == 401
        assert (await direct.post("/api-keys", json={"name": "x"}, headers=forged)).status_code == 401
        assert (await direct.get("/me", headers={"authorization": "Bearer not-a-token"})).status_code == 401
        # the gateway's own call carries the caller's token, which the service verifies itself
        assert (await direct.get("/me", headers=user["headers"])).status_code == 200


async def test_an_oversized_body_is_refused_before_it_is_read(stack: Stack) -> None:
    # 64 MiB declared: refused from the header, before any of the body is read (audit M2: it was read and parsed)
    status, body, elapsed = await raw_post(stack.gateway, "/v1/auth/login", "content-length: 67108864\r\n", 64)
    assert status == 413
    assert body["error"]["code"] == "payload_too_large"
    assert elapsed < 2
    # no length declared: refused once the streamed bytes pass the limit
    status, body, _ = await raw_post(stack.gateway, "/v1/auth/signup", "transfer-encoding: chunked\r\n", 64)
    assert status == 413
    assert body["error"]["code"] == "payload_too_large"


async def test_api_keys_cannot_create_or_revoke_api_keys(stack: Stack) -> None:
    user = await stack.user("minting@example.com")
    async with stack.client() as client:
        created = await client.post(
            "/v1/api-keys", json={"name": "ci", "scopes": ["read", "write"]}, headers=user["headers"]
        )
        assert created.status_code == 201, created.text
        key = {"x-api-key": created.json()["key"]}
        assert (await client.get("/v1/me", headers=key)).json()["role"] == "member"  # a write key still works
        minted = await client.post("/v1/api-keys", json={"name": "child", "scopes": ["read", "write"]}, headers=key)
        assert minted.status_code == 403, minted.text
        assert (await client.delete(f"/v1/api-keys/{created.json()['id']}", headers=key)).status_code == 403
        listed = (await client.get("/v1/api-keys", headers=user["headers"])).json()["items"]
        assert [k["name"] for k in listed] == ["ci"]


async def test_password_change_ends_every_other_session(stack: Stack) -> None:
    here = await stack.user("changer@example.com")
    elsewhere = await stack.user("changer@example.com")  # a second login: another device, or a thief
    # two argon2 runs on a busy machine can pass the default 3 s upstream timeout
    gateway = security_gateway(stack.auth, session_check_cache_s=0, upstream_timeout_s=30)
    async with serving(gateway) as url, httpx.AsyncClient(base_url=url) as client:
        changed = await client.patch(
            "/v1/me",
            json={"password": "a brand new passphrase", "current_password": PASSWORD},
            headers=here["headers"],
        )
        assert changed.status_code == 200, changed.text
        assert (await client.get("/v1/me", headers=elsewhere["headers"])).status_code == 401
        refreshed = await client.post("/v1/auth/refresh", json={"refresh_token": elsewhere["refresh_token"]})
        assert refreshed.status_code == 401
        # the session that made the change goes on
        assert (await client.get("/v1/me", headers=here["headers"])).status_code == 200
        assert (await client.post("/v1/auth/refresh", json={"refresh_token": here["refresh_token"]})).status_code == 200


async def test_email_change_ends_every_other_session(stack: Stack) -> None:
    here = await stack.user("mover@example.com")
    elsewhere = await stack.user("mover@example.com")
    async with stack.client() as client:
        changed = await client.patch(
            "/v1/me", json={"email": "moved@example.com", "current_password": PASSWORD}, headers=here["headers"]
        )
        assert changed.status_code == 200, changed.text
        refreshed = await client.post("/v1/auth/refresh", json={"refresh_token": elsewhere["refresh_token"]})
    assert refreshed.status_code == 401


async def test_logout_ends_the_access_token(stack: Stack) -> None:
    user = await stack.user("leaver@example.com")
    gateway = security_gateway(stack.auth, session_check_cache_s=0.2)
    async with serving(gateway) as url, httpx.AsyncClient(base_url=url) as client:
        assert (await client.get("/v1/me", headers=user["headers"])).status_code == 200
        out = await client.post("/v1/auth/logout", json={"refresh_token": user["refresh_token"]})
        assert out.status_code == 204
        await asyncio.sleep(0.3)  # the gateway's cached "active" answer expires
        after = await client.get("/v1/me", headers=user["headers"])
    assert after.status_code == 401
    assert "session ended" in after.json()["error"]["message"]


async def test_correct_logins_never_lock_the_account(stack: Stack) -> None:
    await stack.user("regular@example.com")
    limit = int(stack.auth_settings.login_rate_limit.split("/")[0])
    credentials = {"email": "regular@example.com", "password": PASSWORD}
    async with stack.client() as client:
        good = [(await client.post("/v1/auth/login", json=credentials)).status_code for _ in range(limit + 2)]
        assert good == [200] * (limit + 2)
        wrong = {"email": "regular@example.com", "password": "not the password"}
        bad = [(await client.post("/v1/auth/login", json=wrong)).status_code for _ in range(limit)]
        assert bad == [401] * limit
        locked = await client.post("/v1/auth/login", json=credentials)
    assert locked.status_code == 429, "failures lock the account, whatever the next password"


async def _hf_sign_in(stack: Stack, client: httpx.AsyncClient, username: str) -> httpx.Response:
    """Sign in with (the replay Hub's) Hugging Face as `username`; the gateway's final answer."""
    start = await client.get("/v1/auth/hf/login")
    assert start.status_code == 302, start.text
    async with httpx.AsyncClient() as browser:
        consent = await browser.get(start.headers["location"] + f"&login_hint={username}")
    callback = urlsplit(consent.headers["location"])
    return await client.get(f"{callback.path}?{callback.query}")


async def _hf_consented(client: httpx.AsyncClient, username: str) -> dict[str, str]:
    """A sign-in started in `client` (its state cookie set) and consented to: the callback's query parameters."""
    start = await client.get("/v1/auth/hf/login")
    async with httpx.AsyncClient() as browser:
        consent = await browser.get(start.headers["location"] + f"&login_hint={username}")
    return dict(parse_qsl(urlsplit(consent.headers["location"]).query))


async def test_a_code_hugging_face_refuses_is_a_400_not_a_500(stack: Stack) -> None:
    # an expired, reused or forged code: the token endpoint answers 400 invalid_grant (RFC 6749 5.2)
    async with stack.client() as client:
        query = await _hf_consented(client, "refused-hf")
        done = await client.get("/v1/auth/hf/callback", params={"code": "not-a-code", "state": query["state"]})
    assert done.status_code == 400, done.text
    assert done.json()["error"]["code"] == "oauth_failed"
    assert "invalid_grant" in done.json()["error"]["message"]


async def test_declining_on_hugging_face_is_a_400_that_says_so(stack: Stack) -> None:
    # "Deny" on the consent screen: back with error and error_description, no code (RFC 6749 4.1.2.1)
    async with stack.client() as client:
        query = await _hf_consented(client, "declined-hf")
        done = await client.get(
            "/v1/auth/hf/callback",
            params={"error": "access_denied", "error_description": "The user denied access", "state": query["state"]},
        )
    assert done.status_code == 400, done.text
    assert done.json()["error"]["code"] == "oauth_failed"
    assert "access_denied" in done.json()["error"]["message"]
    assert "The user denied access" in done.json()["error"]["message"]
    assert "hp_access" not in client.cookies


async def test_sign_in_with_hf_never_links_an_unverified_email(stack: Stack) -> None:
    # the attacker signs up first with the victim's address (which HF knows as verified) and a password of theirs
    victim_email = "victim-hf@users.replay-hub.example.com"
    attacker = await stack.user(victim_email)
    async with stack.client() as client:
        done = await _hf_sign_in(stack, client, "victim-hf")
        assert done.status_code == 409, done.text
        assert done.json()["error"]["code"] == "link_required"
        assert "hp_access" not in client.cookies
    async with stack.client() as client:
        me = (await client.get("/v1/me", headers=attacker["headers"])).json()
    assert me["hf_username"] is None, "the attacker's account did not get the victim's HF identity"


async def test_a_signed_in_user_links_their_hf_account(stack: Stack) -> None:
    user = await stack.user("linker-hf@users.replay-hub.example.com")
    async with stack.client(headers=user["headers"]) as client:
        done = await _hf_sign_in(stack, client, "linker-hf")
        assert done.status_code == 302, done.text
        me = await client.get("/v1/me")
    assert me.json()["hf_username"] == "linker-hf"
    assert me.json()["email"] == "linker-hf@users.replay-hub.example.com"


async def test_api_keys_are_private_to_their_owner(stack: Stack) -> None:
    alice = await stack.user("alice-keys@example.com")
    bob = await stack.user("bob-keys@example.com")
    async with stack.client() as client:
        created = await client.post("/v1/api-keys", json={"name": "alice-ci"}, headers=alice["headers"])
        assert created.status_code == 201
        key_id = created.json()["id"]
        assert (await client.get("/v1/api-keys", headers=bob["headers"])).json()["items"] == []
        assert (await client.delete(f"/v1/api-keys/{key_id}", headers=bob["headers"])).status_code == 404
        assert (await client.get("/v1/me", headers={"x-api-key": created.json()["key"]})).status_code == 200
        # a key acts in its creator's organisation only
        me = (await client.get("/v1/me", headers={"x-api-key": created.json()["key"]})).json()
        assert me["email"] == "alice-keys@example.com"
