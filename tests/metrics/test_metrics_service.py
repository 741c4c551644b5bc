"""The metrics service end to end: real broker, real SecantusDB, the service as its own process."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import signal
import statistics
import time
from collections.abc import Callable

import httpx
import numpy as np
import pytest
import websockets
from support.polling import eventually

from hubpulse_common.events import DeploymentEvent, DeploymentStatus
from hubpulse_common.kafka import EventBus
from metrics.support import (
    ADMIN,
    ALERTED,
    ISSUER,
    TEST_ORG,
    TEST_USER,
    MetricsProcess,
    WebhookReceiver,
    inference,
    new_deployment,
    running,
)


async def get_json(url: str, as_: dict[str, str] = ADMIN, **params: str) -> dict:
    """GET as `as_` (default: an admin of the organisation the test events belong to)."""
    async with httpx.AsyncClient(timeout=10, headers=as_) as client:
        response = await client.get(url, params=params)
    response.raise_for_status()
    body: dict = response.json()
    return body


async def requests_of(service: MetricsProcess, deployment_id: str, as_: dict[str, str] = ADMIN, **params: str) -> int:
    body = await get_json(f"{service.url}/v1/metrics/deployments/{deployment_id}", as_, **params)
    requests: int = body["summary"]["requests"]
    return requests


async def test_duplicates_are_counted_once(shared_metrics: MetricsProcess, bus: EventBus) -> None:
    dep = new_deployment()
    events = [inference(dep, user_id="u1") for _ in range(40)]
    await bus.publish_many(events)
    await bus.publish_many([*events, *(inference(dep, user_id="u1") for _ in range(10))])
    transitions = [
        DeploymentEvent(
            deployment_id=dep,
            sequence=i,
            model_id="m",
            target="local",
            status=status,
            version=1,
            previous_status=prev,
            user_id=TEST_USER,
            org_id=TEST_ORG,
        )
        for i, (prev, status) in enumerate(
            [
                (None, DeploymentStatus.PENDING),
                (DeploymentStatus.PENDING, DeploymentStatus.PROVISIONING),
                (DeploymentStatus.PROVISIONING, DeploymentStatus.RUNNING),
            ]
        )
    ]
    await bus.publish_many([*transitions, *reversed(transitions)])

    async def settled() -> bool:
        body = await get_json(f"{shared_metrics.url}/v1/metrics/deployments/{dep}")
        return body["summary"]["requests"] == 50 and (body["state"] or {}).get("sequence") == 2

    await eventually(settled, 15)
    await asyncio.sleep(1.0)  # anything still in flight would show up now
    body = await get_json(f"{shared_metrics.url}/v1/metrics/deployments/{dep}")
    assert body["summary"]["requests"] == 50
    assert body["state"]["status"] == "running"
    usage = await get_json(f"{shared_metrics.url}/v1/usage", group_by="deployment", deployment_id=dep)
    assert [(r["key"], r["requests"]) for r in usage["rows"]] == [(dep, 50)]
    prom = httpx.get(f"{shared_metrics.url}/metrics").text
    dup_line = next(
        line
        for line in prom.splitlines()
        if line.startswith('hubpulse_metrics_events_duplicate_total{topic="inference.events.v1"}')
    )
    assert float(dup_line.rsplit(" ", 1)[1]) >= 40


async def test_percentiles_and_filters_match_numpy(shared_metrics: MetricsProcess, bus: EventBus) -> None:
    rng = np.random.default_rng(7)
    dep = new_deployment()
    latencies = rng.lognormal(3.0, 0.8, size=300)
    users = rng.choice(["alice", "bob"], size=300)
    failed = rng.random(300) < 0.1
    await bus.publish_many(
        inference(
            dep,
            latency_ms=float(lat),
            user_id=str(user),
            org_id="acme",
            status="error" if bad else "ok",
            http_status=503 if bad else 200,
        )
        for lat, user, bad in zip(latencies, users, failed, strict=True)
    )
    acme = ISSUER.headers("carol", "acme", "admin")
    await eventually(lambda: _has(shared_metrics, dep, 300, acme), 15)

    body = await get_json(f"{shared_metrics.url}/v1/metrics/deployments/{dep}", as_=acme)
    summary = body["summary"]
    expected = np.percentile(latencies, [50, 95, 99])
    assert [summary["p50_ms"], summary["p95_ms"], summary["p99_ms"]] == pytest.approx(expected.tolist(), rel=1e-9)
    assert summary["errors"] == int(failed.sum())
    assert summary["error_rate"] == pytest.approx(failed.mean())
    assert sum(point["requests"] for point in body["series"]) == 300

    alice = users == "alice"
    only_alice = await get_json(f"{shared_metrics.url}/v1/metrics/deployments/{dep}", as_=acme, user_id="alice")
    assert only_alice["summary"]["requests"] == int(alice.sum())
    assert only_alice["summary"]["p95_ms"] == pytest.approx(float(np.percentile(latencies[alice], 95)), rel=1e-9)
    nobody = await get_json(f"{shared_metrics.url}/v1/metrics/deployments/{dep}", as_=ISSUER.headers("x", "other"))
    assert nobody["summary"]["requests"] == 0
    assert nobody["summary"]["p95_ms"] is None

    async with httpx.AsyncClient(headers=acme) as client:
        bad = await client.get(
            f"{shared_metrics.url}/v1/metrics/deployments/{dep}",
            params={"since": "2030-01-02T00:00:00Z", "until": "2030-01-01T00:00:00Z"},
        )
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "bad_range"


async def _has(service: MetricsProcess, dep: str, n: int, as_: dict[str, str] = ADMIN) -> bool:
    return await requests_of(service, dep, as_) >= n


async def test_usage_exports_json_and_csv(shared_metrics: MetricsProcess, bus: EventBus) -> None:
    dep = new_deployment()
    calls = {("ana", "org-a"): 7, ("ben", "org-a"): 4, ("cyd", "org-b"): 2}
    await bus.publish_many(
        inference(dep, user_id=user, org_id=org, inputs=3, request_bytes=10, response_bytes=20)
        for (user, org), n in calls.items()
        for _ in range(n)
    )
    await bus.publish(inference(dep, user_id="ana", org_id="org-a", status="error", http_status=500, inputs=1))

    # Each organisation's admin sees only that organisation's calls (audit H7/M11: the org was a query parameter,
    # so anyone could read every org's usage); a member sees only their own.
    org_a, org_b = ISSUER.headers("ana", "org-a", "admin"), ISSUER.headers("cyd", "org-b", "admin")

    async def rolled_up() -> bool:
        body = await get_json(f"{shared_metrics.url}/v1/usage", org_a, group_by="org", deployment_id=dep)
        return sum(r["requests"] for r in body["rows"]) == 12

    await eventually(rolled_up, 15)
    by_user = await get_json(f"{shared_metrics.url}/v1/usage", org_a, group_by="user", deployment_id=dep)
    rows = {r["key"]: r for r in by_user["rows"]}
    assert {k: r["requests"] for k, r in rows.items()} == {"ana": 8, "ben": 4}
    other = await get_json(f"{shared_metrics.url}/v1/usage", org_b, group_by="user", deployment_id=dep)
    assert {r["key"]: r["requests"] for r in other["rows"]} == {"cyd": 2}
    ben = ISSUER.headers("ben", "org-a", "member")
    own = await get_json(f"{shared_metrics.url}/v1/usage", ben, group_by="user", deployment_id=dep)
    assert {r["key"]: r["requests"] for r in own["rows"]} == {"ben": 4}
    async with httpx.AsyncClient(headers=ben) as client:
        nosy = await client.get(f"{shared_metrics.url}/v1/usage", params={"user_id": "ana"})
    assert nosy.status_code == 403
    assert rows["ana"]["errors"] == 1
    assert rows["ana"]["inputs"] == 7 * 3 + 1
    assert rows["ben"]["request_bytes"] == 40
    by_org = await get_json(f"{shared_metrics.url}/v1/usage", org_a, group_by="org", deployment_id=dep)
    assert {r["key"]: r["requests"] for r in by_org["rows"]} == {"org-a": 12}

    response = httpx.get(
        f"{shared_metrics.url}/v1/usage",
        params={"group_by": "user", "deployment_id": dep, "format": "csv"},
        headers=org_a,
    )
    assert response.headers["content-type"].startswith("text/csv")
    parsed = list(csv.DictReader(io.StringIO(response.text)))
    assert [(r["user"], int(r["requests"]), int(r["errors"])) for r in parsed] == [
        (r["key"], r["requests"], r["errors"]) for r in by_user["rows"]
    ]
    bad = httpx.get(f"{shared_metrics.url}/v1/usage", params={"format": "xml"}, headers=org_a)
    assert bad.status_code == 422


async def test_error_rate_alert_fires_and_calls_the_webhook(
    shared_metrics: MetricsProcess, bus: EventBus, webhook: WebhookReceiver
) -> None:
    service, dep = shared_metrics, ALERTED
    await bus.publish_many([inference(dep) for _ in range(6)])
    await eventually(lambda: _has(service, dep, 6), 15)
    await asyncio.sleep(1.5)
    assert webhook.received == [], "healthy traffic must not alert"

    await bus.publish_many([inference(dep, status="error", http_status=500) for _ in range(6)])

    async def delivered() -> bool:
        return bool(webhook.received)

    await eventually(delivered, 15)
    alert = webhook.received[0]
    assert (alert["rule"], alert["deployment_id"], alert["state"]) == ("errors", dep, "firing")
    assert alert["value"] == pytest.approx(0.5)
    assert webhook.fail_first == 0, "the first delivery failed with 503 and was retried"
    await bus.publish(running(dep))  # whose deployment it is: alerts are shown to its owner and org admins only
    await eventually(lambda: _state_known(service, dep), 15)
    listed = httpx.get(f"{service.url}/v1/alerts", params={"deployment_id": dep}, headers=ADMIN).json()
    assert httpx.get(f"{service.url}/v1/alerts", headers=ISSUER.headers("x", "other", "admin")).json() == []
    assert [(a["rule"], a["state"]) for a in listed] == [("errors", "firing")]
    await asyncio.sleep(1.5)
    assert len(webhook.received) == 1, "a firing alert is sent once, not every round"


async def _state_known(service: MetricsProcess, dep: str) -> bool:
    return (await get_json(f"{service.url}/v1/metrics/deployments/{dep}"))["state"] is not None


async def test_kill_9_mid_stream_loses_no_event(start_metrics: Callable[..., MetricsProcess], bus: EventBus) -> None:
    dep = new_deployment()
    total = 3000
    service = start_metrics()
    publishing = asyncio.create_task(
        _publish_slowly(bus, [inference(dep, latency_ms=float(i % 97)) for i in range(total)], chunk=100)
    )
    await eventually(lambda: _has(service, dep, 1), 20, interval_s=0.02)
    assert service.kill(signal.SIGKILL) == -signal.SIGKILL
    await publishing
    service.start()

    async def all_counted() -> bool:
        return await requests_of(service, dep) >= total

    await eventually(all_counted, 30)
    await asyncio.sleep(1.0)
    assert await requests_of(service, dep) == total
    usage = await get_json(f"{service.url}/v1/usage", group_by="deployment", deployment_id=dep)
    assert usage["rows"][0]["requests"] == total


async def _publish_slowly(bus: EventBus, events: list, chunk: int) -> None:
    for start in range(0, len(events), chunk):
        await bus.publish_many(events[start : start + chunk])
        await asyncio.sleep(0.02)


async def test_live_socket_pushes_within_two_seconds(shared_metrics: MetricsProcess, bus: EventBus) -> None:
    dep = new_deployment()
    ws_url = shared_metrics.url.replace("http", "ws") + f"/v1/live/metrics?deployment_id={dep}"
    async with websockets.connect(ws_url, additional_headers=ADMIN) as socket:
        first = json.loads(await asyncio.wait_for(socket.recv(), 5))
        assert first["deployments"] == []
        sent = time.monotonic()
        await bus.publish(inference(dep, latency_ms=42.0))
        while True:
            push = json.loads(await asyncio.wait_for(socket.recv(), 5))
            if push["deployments"]:
                break
        elapsed = time.monotonic() - sent
    assert push["deployments"][0]["deployment_id"] == dep
    assert push["deployments"][0]["p50_ms"] == pytest.approx(42.0)
    assert elapsed < 2.0


async def test_metrics_lag(shared_metrics: MetricsProcess, bus: EventBus) -> None:
    """Event published -> visible in GET /v1/metrics/deployments/{id}; printed for the report."""
    dep = new_deployment()
    lags = []
    for n in range(1, 31):
        start = time.monotonic()
        await bus.publish(inference(dep))
        await eventually(lambda n=n: _has(shared_metrics, dep, n), 5, interval_s=0.01)  # type: ignore[misc]
        lags.append(time.monotonic() - start)
    p50, p95 = np.percentile(lags, [50, 95])
    print(
        f"metrics lag over {len(lags)} events: p50={p50 * 1000:.0f} ms p95={p95 * 1000:.0f} ms "
        f"mean={statistics.mean(lags) * 1000:.0f} ms"
    )
    assert p95 < 2.0
