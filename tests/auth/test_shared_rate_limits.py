"""Rate limits shared by gateway replicas through MongoDB (HUBPULSE_RATE_LIMIT_STORAGE=mongodb), and what a
replica does when MongoDB is unreachable (fails open to its own counters)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from conftest import Store

from auth.conftest import security_gateway, serving
from hubpulse.platform.stores import free_port
from hubpulse_common.ratelimit import shared_limiter

AUTH_DOWN = "http://127.0.0.1:9"  # anonymous /v1/me is refused (401) by the gateway itself


def replica(mongo_url: str, database: str, **overrides: Any) -> Any:
    return security_gateway(
        AUTH_DOWN, rate_limit_storage="mongodb", mongo_url=mongo_url, mongo_database=database, **overrides
    )


async def test_two_replicas_share_one_budget(mongo: Store) -> None:
    database = f"limits_{uuid.uuid4().hex[:8]}"
    a, b = (
        replica(mongo.url, database, api_rate_limit="10/minute"),
        replica(mongo.url, database, api_rate_limit="10/minute"),
    )
    async with serving(a) as url_a, serving(b) as url_b, httpx.AsyncClient() as client:
        responses = []
        for _ in range(6):  # 12 calls from one address, alternating between the replicas
            responses.append(await client.get(f"{url_a}/v1/me"))
            responses.append(await client.get(f"{url_b}/v1/me"))
    codes = [r.status_code for r in responses]
    assert codes == [401] * 10 + [429, 429], codes  # per-replica memory would have let all 12 through
    for refused in responses[10:]:
        assert refused.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(refused.headers["retry-after"]) <= 120


async def test_an_unreachable_store_falls_back_to_the_replicas_own_limits() -> None:
    dead = f"mongodb://127.0.0.1:{free_port()}"
    gateway = replica(dead, "limits", api_rate_limit="3/minute", rate_limit_store_timeout_s=0.2)
    async with serving(gateway) as url, httpx.AsyncClient(base_url=url, timeout=5) as client:
        started = asyncio.get_running_loop().time()
        codes = [(await client.get("/v1/me")).status_code for _ in range(5)]
        elapsed = asyncio.get_running_loop().time() - started
    # served (fail open), still limited per replica, and only the first check waited for the store
    assert codes == [401, 401, 401, 429, 429], codes
    assert elapsed < 3, elapsed


async def test_counters_expire_and_restart(mongo: Store) -> None:
    limiter, client = shared_limiter(mongo.url, f"limits_{uuid.uuid4().hex[:8]}", timeout_s=2, retry_s=10)
    storage = limiter.shared.storage if limiter.shared else None
    assert storage is not None
    try:
        assert [await storage.incr("k", 1) for _ in range(3)] == [1, 2, 3]
        assert await storage.get("k") == 3
        await asyncio.sleep(1.2)
        assert await storage.get("k") == 0
        assert await storage.incr("k", 1) == 1, "a counter past its expiry starts again"
        assert await storage.check()
    finally:
        await client.close()
