"""The metrics added for the dashboards behave as their panels assume (the live test checks that they exist)."""

from __future__ import annotations

import httpx
import pytest
import websockets
from auth.conftest import serving  # tests/auth/conftest.py (pytest puts tests/ on sys.path)
from fastapi import WebSocket
from prometheus_client import REGISTRY

from hubpulse_common.events import ModelSnapshot
from hubpulse_common.http import ApiError, add_readiness_probe, create_service_app
from hubpulse_common.kafka import BatchConsumer
from hubpulse_gateway.settings import GatewaySettings
from hubpulse_gateway.upstream import UpstreamClient


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


async def test_open_websockets_are_counted_until_they_close() -> None:
    app = create_service_app(service="wsprobe", title="probe")

    @app.websocket("/echo")
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(await websocket.receive_text())
        await websocket.receive_text()  # until the client goes

    async with serving(app) as url:
        async with websockets.connect(url.replace("http", "ws") + "/echo") as socket:
            await socket.send("hi")
            assert await socket.recv() == "hi"
            assert sample("hubpulse_websocket_connections", service="wsprobe", route="/echo") == 1
        async with httpx.AsyncClient(base_url=url) as client:
            for _ in range(50):  # the handler ends once the close reaches it
                if sample("hubpulse_websocket_connections", service="wsprobe", route="/echo") == 0:
                    break
                await client.get("/healthz")
    assert sample("hubpulse_websocket_connections", service="wsprobe", route="/echo") == 0


async def test_each_scrape_reports_every_readiness_check() -> None:
    app = create_service_app(service="readyprobe", title="probe")
    store_up = True

    async def store() -> None:
        if not store_up:
            raise ConnectionError("store unreachable")

    async def broker() -> None:
        return None

    add_readiness_probe(app, "store", store)
    add_readiness_probe(app, "broker", broker)
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as client:
        text = (await client.get("/metrics")).text
        assert 'hubpulse_readiness_check{check="store",service="readyprobe"} 1.0' in text
        store_up = False
        text = (await client.get("/metrics")).text
    assert 'hubpulse_readiness_check{check="store",service="readyprobe"} 0.0' in text
    assert 'hubpulse_readiness_check{check="broker",service="readyprobe"} 1.0' in text


async def test_the_breaker_state_is_exported_per_upstream() -> None:
    client = UpstreamClient("nowhere", "http://127.0.0.1:9", GatewaySettings(breaker_threshold=2, upstream_retries=0))
    try:
        assert sample("hubpulse_gateway_upstream_circuit_state", upstream="nowhere", state="closed") == 1
        for _ in range(3):
            with pytest.raises(ApiError):
                await client.request("GET", "/")
        assert sample("hubpulse_gateway_upstream_circuit_state", upstream="nowhere", state="opened") == 1
        assert sample("hubpulse_gateway_upstream_circuit_state", upstream="nowhere", state="closed") == 0
    finally:
        await client.aclose()


async def test_partition_lag_follows_the_partitions_a_pod_owns() -> None:
    async def handler(batch: object) -> None:
        return None

    consumer = BatchConsumer(
        bootstrap="127.0.0.1:9",
        group_id="lagprobe",
        topic=ModelSnapshot.topic,
        event_type=ModelSnapshot,
        handler=handler,
        bus=None,  # type: ignore[arg-type]  # never started: only its lag reporting is exercised
    )
    consumer._report_lag({0: 5, 3: 7})
    labels = {"topic": ModelSnapshot.topic, "group": "lagprobe"}
    assert sample("hubpulse_kafka_consumer_lag", **labels) == 12
    assert sample("hubpulse_kafka_consumer_partition_lag", **labels, partition="3") == 7
    consumer._report_lag({0: 1})  # a rebalance took partition 3 away
    assert sample("hubpulse_kafka_consumer_partition_lag", **labels, partition="0") == 1
    assert sample("hubpulse_kafka_consumer_partition_lag", **labels, partition="3") is None
    assert sample("hubpulse_kafka_consumer_lag", **labels) == 1
