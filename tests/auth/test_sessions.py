"""Refresh rotation and reuse, roles, API keys, rate limits, cookie sessions with CSRF, HF sign-in, upstream down."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from auth.conftest import PASSWORD, Stack, security_gateway, serving


async def test_refresh_rotates_and_reuse_revokes_the_family(stack: Stack) -> None:
    user = await stack.user("refresh@example.com")
    async with stack.client() as client:
        first = await client.post("/v1/auth/refresh", json={"refresh_token": user["refresh_token"]})
        assert first.status_code == 200, first.text
        second = await client.post("/v1/auth/refresh", json={"refresh_token": first.json()["refresh_token"]})
        assert second.status_code == 200
        reused = await client.post("/v1/auth/refresh", json={"refresh_token": user["refresh_token"]})
        assert reused.status_code == 401
        assert reused.json()["error"]["code"] == "refresh_token_reused"
        # The newest token of the family is dead too.
        latest = await client.post("/v1/auth/refresh", json={"refresh_token": second.json()["refresh_token"]})
        assert latest.status_code == 401
    stored = await stack.pool.fetchval(
        "SELECT count(*) FROM auth_refresh_tokens WHERE token_hash = $1", user["refresh_token"]
    )
    assert stored == 0, "refresh tokens are stored hashed"


async def test_each_role_sees_what_the_route_table_allows(stack: Stack) -> None:
    admin = await stack.user("owner@example.com")
    org = (await _get(stack, "/v1/me", admin["headers"])).json()["org_id"]
    for email in ("viewer@example.com", "member@example.com"):
        await stack.user(email)
    async with stack.client() as client:
        for email, role in (("viewer@example.com", "viewer"), ("member@example.com", "member")):
            put = await client.put("/v1/org/members", json={"email": email, "role": role}, headers=admin["headers"])
            assert put.status_code == 200, put.text
    viewer = await stack.user("viewer@example.com", org_id=org)
    member = await stack.user("member@example.com", org_id=org)
    table = {  # route -> roles allowed
        ("GET", "/v1/me"): {"viewer", "member", "admin"},
        ("GET", "/v1/api-keys"): {"viewer", "member", "admin"},
        ("GET", "/v1/org/members"): {"viewer", "member", "admin"},
        ("POST", "/v1/api-keys"): {"member", "admin"},
        ("PUT", "/v1/org/members"): {"admin"},
    }
    bodies = {"/v1/api-keys": {"name": "k"}, "/v1/org/members": {"email": "viewer@example.com", "role": "viewer"}}
    async with stack.client() as client:
        for (method, path), allowed in table.items():
            body = bodies.get(path) if method != "GET" else None
            anonymous = await client.request(method, path, json=body)
            assert anonymous.status_code == 401, (method, path)
            for role, user in (("viewer", viewer), ("member", member), ("admin", admin)):
                response = await client.request(method, path, json=body, headers=user["headers"])
                expected = {200, 201} if role in allowed else {403}
                assert response.status_code in expected, (method, path, role, response.text)
                if role in allowed and path == "/v1/me":
                    assert response.json()["role"] == role
                    assert response.json()["org_id"] == org


async def test_api_key_lifecycle(stack: Stack) -> None:
    user = await stack.user("keys@example.com")
    async with stack.client() as client:
        created = await client.post("/v1/api-keys", json={"name": "ci", "scopes": ["read"]}, headers=user["headers"])
        assert created.status_code == 201, created.text
        key = created.json()["key"]
        assert key.startswith("hpk_")
        listed = (await client.get("/v1/api-keys", headers=user["headers"])).json()["items"]
        assert [k["id"] for k in listed] == [created.json()["id"]]
        assert key not in str(listed), "the secret is shown only once"
        me = await client.get("/v1/me", headers={"x-api-key": key})
        assert me.status_code == 200, me.text
        assert me.json()["role"] == "viewer"  # a read-scoped key acts as a viewer
        assert (await client.post("/v1/api-keys", json={"name": "x"}, headers={"x-api-key": key})).status_code == 403
        bad = await client.post("/v1/api-keys", json={"name": "x", "scopes": ["root"]}, headers=user["headers"])
        assert bad.status_code == 422
        gone = await client.delete(f"/v1/api-keys/{created.json()['id']}", headers=user["headers"])
        assert gone.status_code == 204
        assert (await client.get("/v1/me", headers={"x-api-key": key})).status_code == 401
        assert (await client.get("/v1/me", headers={"x-api-key": key[:-2] + "xx"})).status_code == 401


async def test_nul_in_free_text_and_unsafe_ids_are_422s(stack: Stack) -> None:
    user = await stack.user("nul@example.com")
    async with stack.client() as client:
        for method, path, body in (
            ("POST", "/v1/auth/signup", {"email": "other@example.com", "password": PASSWORD, "name": "a\x00b"}),
            ("PATCH", "/v1/me", {"name": "a\x00b"}),
            ("POST", "/v1/api-keys", {"name": "a\x00b"}),
            ("DELETE", "/v1/api-keys/a%00b", None),
            # ids forwarded into an upstream path cannot add a query string or climb out of the resource
            ("DELETE", "/v1/api-keys/a%3Fb", None),
            ("DELETE", "/v1/api-keys/.%2E", None),
        ):
            response = await client.request(method, path, json=body, headers=user["headers"])
            assert response.status_code == 422, (path, response.text)
            assert response.json()["error"]["code"] == "validation_error"


async def test_login_rate_limit_answers_429_with_retry_after(stack: Stack) -> None:
    await stack.user("limited@example.com")
    async with stack.client() as client:
        statuses = []
        for _ in range(int(stack.auth_settings.login_rate_limit.split("/")[0]) + 1):
            response = await client.post(
                "/v1/auth/login", json={"email": "limited@example.com", "password": "nope-nope"}
            )
            statuses.append(response.status_code)
    assert statuses[-1] == 429, statuses
    assert set(statuses[:-2]) == {401}, statuses
    assert int(response.headers["retry-after"]) >= 1
    assert response.json()["error"]["code"] == "rate_limited"


async def test_api_rate_limit_per_principal_and_real_ip(stack: Stack) -> None:
    user = await stack.user("ratelimited@example.com")
    gateway = security_gateway(stack.auth, api_rate_limit="3/minute")
    async with serving(gateway) as url, httpx.AsyncClient(base_url=url) as client:
        codes = [(await client.get("/v1/me")).status_code for _ in range(4)]
        assert codes == [401, 401, 401, 429]
        limited = await client.get("/v1/me")
        assert int(limited.headers["retry-after"]) >= 1
        # Made-up API keys and a forged X-Forwarded-For buy no budget of their own (audit M1: both did).
        for n in range(5):
            assert (await client.get("/v1/me", headers={"x-api-key": f"hpk_fake{n}_x"})).status_code == 429
            assert (await client.get("/v1/me", headers={"x-forwarded-for": f"10.0.0.{n}"})).status_code == 429
        # A genuine credential is a principal with a budget of its own.
        assert (await client.get("/v1/me", headers=user["headers"])).status_code == 200


async def test_forwarded_for_is_believed_only_from_trusted_proxies(stack: Stack) -> None:
    gateway = security_gateway(stack.auth, api_rate_limit="2/minute", trusted_proxies=["127.0.0.1/32"])
    async with serving(gateway) as url, httpx.AsyncClient(base_url=url) as client:

        async def codes(forwarded: str) -> list[int]:
            headers = {"x-forwarded-for": forwarded}
            return [(await client.get("/v1/me", headers=headers)).status_code for _ in range(3)]

        assert await codes("203.0.113.7") == [401, 401, 429]
        assert await codes("198.51.100.9") == [401, 401, 429], "another client behind the proxy: its own budget"
        # The client may prepend anything; the right-most hop not a trusted proxy is who called.
        assert await codes("1.1.1.1, 203.0.113.7") == [429, 429, 429]


async def test_login_and_signup_share_a_per_ip_budget(stack: Stack) -> None:
    # an hour's budget: the limiter's window is a sliding counter over clock-aligned windows, and five requests
    # slowed down by a loaded machine (a signup hashes its password) could straddle a minute's end, after which the
    # previous minute's hits weigh less (the fifth was let through once in the full suite)
    gateway = security_gateway(stack.auth, auth_ip_rate_limit="4/hour")
    async with serving(gateway) as url, httpx.AsyncClient(base_url=url) as client:
        statuses = [
            (await client.post("/v1/auth/login", json={"email": f"spray{n}@example.com", "password": "x"})).status_code
            for n in range(3)
        ]
        signup = await client.post("/v1/auth/signup", json={"email": "sprayer@example.com", "password": PASSWORD})
        refused = await client.post("/v1/auth/login", json={"email": "spray9@example.com", "password": "x"})
    assert statuses == [401, 401, 401]
    assert signup.status_code == 201
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"


async def test_cookie_session_needs_csrf_on_writes(stack: Stack) -> None:
    await stack.user("cookie@example.com")
    async with stack.client() as client:
        login = await client.post(
            "/v1/auth/login", json={"email": "cookie@example.com", "password": PASSWORD, "session": True}
        )
        assert login.status_code == 200, login.text
        body = login.json()
        assert "access_token" not in body
        assert "refresh_token" not in body
        cookies = login.headers.get_list("set-cookie")
        assert any(c.startswith("hp_access=") and "HttpOnly" in c and "SameSite=lax" in c for c in cookies), cookies
        assert any(c.startswith("hp_refresh=") and "HttpOnly" in c and "SameSite=strict" in c for c in cookies)
        csrf = body["csrf_token"]
        assert (await client.get("/v1/me")).status_code == 200
        assert (await client.post("/v1/api-keys", json={"name": "web"})).status_code == 403
        wrong = await client.post("/v1/api-keys", json={"name": "web"}, headers={"x-csrf-token": "guess"})
        assert wrong.status_code == 403
        ok = await client.post("/v1/api-keys", json={"name": "web"}, headers={"x-csrf-token": csrf})
        assert ok.status_code == 201, ok.text
        assert (await client.post("/v1/auth/refresh")).status_code == 403
        refreshed = await client.post("/v1/auth/refresh", headers={"x-csrf-token": csrf})
        assert refreshed.status_code == 200, refreshed.text
        assert (await client.get("/v1/me")).status_code == 200
        out = await client.post("/v1/auth/logout", headers={"x-csrf-token": csrf})
        assert out.status_code == 204
        client.cookies.clear()
        assert (await client.get("/v1/me")).status_code == 401


async def test_sign_in_with_hugging_face_pkce(stack: Stack) -> None:
    async with stack.client() as client:
        start = await client.get("/v1/auth/hf/login", params={"return_to": "/models"})
        assert start.status_code == 302
        authorize = urlsplit(start.headers["location"])
        query = parse_qs(authorize.query)
        assert authorize.netloc == urlsplit(stack.hub).netloc
        assert query["code_challenge_method"] == ["S256"]
        assert query["code_challenge"]
        async with httpx.AsyncClient() as browser:
            consent = await browser.get(start.headers["location"] + "&login_hint=jane-doe")
        assert consent.status_code == 302
        callback = urlsplit(consent.headers["location"])
        forged = await client.get(callback.path, params={"code": "x", "state": "forged"})
        assert forged.status_code == 400
        done = await client.get(f"{callback.path}?{callback.query}")
        assert done.status_code == 302, done.text
        assert done.headers["location"] == "/models"
        me = await client.get("/v1/me")
        assert me.status_code == 200, me.text
        assert me.json()["hf_username"] == "jane-doe"
        replay = await client.get(f"{callback.path}?{callback.query}")
        assert replay.status_code == 400, "a code and state work once"


async def test_auth_down_gives_503_quickly() -> None:
    gateway = security_gateway("http://127.0.0.1:9", breaker_threshold=2)
    async with serving(gateway) as url, httpx.AsyncClient(base_url=url) as client:
        start = time.monotonic()
        for _ in range(3):
            response = await client.post("/v1/auth/login", json={"email": "a@example.com", "password": "x"})
            assert response.status_code == 503
        assert response.json()["error"]["message"].endswith("(circuit open)")
        assert time.monotonic() - start < 5


async def _get(stack: Stack, path: str, headers: dict[str, str]) -> httpx.Response:
    async with stack.client() as client:
        return await client.get(path, headers=headers)


async def test_an_error_the_upstream_renders_itself_does_not_open_the_breaker() -> None:
    from fastapi import FastAPI
    from fastapi.responses import PlainTextResponse

    from hubpulse_common.http import ApiError, error_response
    from hubpulse_gateway.settings import GatewaySettings
    from hubpulse_gateway.upstream import UpstreamClient

    upstream = FastAPI()
    upstream.get("/offline")(lambda: error_response(503, "unavailable", "Hugging Face is down", {"retry-after": "7"}))
    upstream.get("/bug")(lambda: error_response(500, "internal_error", "a bug"))
    upstream.get("/crash")(lambda: PlainTextResponse("proxy error", status_code=500))
    upstream.get("/ok")(lambda: {"ok": True})

    async def fails(path: str) -> ApiError:
        with pytest.raises(ApiError) as caught:
            await client.request("GET", path)
        return caught.value

    async with serving(upstream) as url:
        client = UpstreamClient("auth", url, GatewaySettings(breaker_threshold=2, upstream_retries=1))
        try:
            for _ in range(5):  # an anonymous caller hammering a route that answers 503 on purpose
                error = await fails("/offline")
                assert (error.status, error.message) == (503, "Hugging Face is down")
                assert error.headers == {"retry-after": "7"}
            for _ in range(3):
                error = await fails("/bug")
                assert (error.status, error.code) == (502, "bad_gateway")
            assert await client.json("GET", "/ok") == {"ok": True}, "the breaker is still closed"
            # no answer of its own: retried and counted (two attempts reach the threshold of 2)
            assert (await fails("/crash")).status == 502
            error = await fails("/ok")
            assert (error.status, error.message) == (503, "auth service is unavailable (circuit open)")
        finally:
            await client.aclose()
