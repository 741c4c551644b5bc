"""Who may read what from the metrics service, whoever can reach it (security audit H7, M9, M11): a verified
token is required, and the organisation and user come from it, never from the query."""

from __future__ import annotations

import httpx
import pytest
import websockets
from support.polling import eventually
from websockets.exceptions import WebSocketException

from hubpulse_common.kafka import EventBus
from metrics.support import ISSUER, MetricsProcess, inference, new_deployment, running

ROUTES = ("/v1/metrics/deployments/{dep}", "/v1/usage", "/v1/live/metrics", "/v1/alerts")


async def test_no_token_no_answer(shared_metrics: MetricsProcess) -> None:
    dep = new_deployment()
    forged = {"x-hubpulse-user": "u", "x-hubpulse-org": "o", "x-hubpulse-role": "admin"}
    async with httpx.AsyncClient(base_url=shared_metrics.url) as client:
        for route in ROUTES:
            for headers in ({}, forged, {"authorization": "Bearer forged"}):
                response = await client.get(route.format(dep=dep), params={"org_id": "o"}, headers=headers)
                assert response.status_code == 401, (route, headers, response.text)
                assert response.json()["error"]["code"] == "unauthorized"
    ws_url = shared_metrics.url.replace("http", "ws") + "/v1/live/metrics"
    with pytest.raises(WebSocketException):
        async with websockets.connect(ws_url) as socket:
            await socket.recv()


async def test_deployment_metrics_of_another_org_are_not_found(shared_metrics: MetricsProcess, bus: EventBus) -> None:
    dep = new_deployment()
    await bus.publish(running(dep, user_id="owner", org_id="org-a"))
    await bus.publish_many([inference(dep, user_id="owner", org_id="org-a") for _ in range(3)])
    url = f"{shared_metrics.url}/v1/metrics/deployments/{dep}"
    owner = ISSUER.headers("owner", "org-a", "member")

    async def seen() -> bool:
        body = httpx.get(url, headers=owner).json()
        return body["state"] is not None and body["summary"]["requests"] == 3

    await eventually(seen, 15)
    admin = httpx.get(url, headers=ISSUER.headers("boss", "org-a", "admin"))
    assert admin.status_code == 200
    assert admin.json()["state"]["status"] == "running"
    for stranger in (ISSUER.headers("b", "org-b", "admin"), ISSUER.headers("colleague", "org-a", "member")):
        response = httpx.get(url, headers=stranger)
        assert response.status_code == 404, response.text  # audit M11: another org got the state, 200
        assert response.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("route", "params"),
    [
        ("/v1/usage", {"until": "0001-01-01T00:10:00Z"}),
        ("/v1/usage", {"since": "0001-01-01T00:00:00+01:00"}),
        ("/v1/usage", {"until": "9999-12-31T23:00:00-05:00"}),
        ("/v1/metrics/deployments/dep-x", {"until": "0001-01-01T00:10:00Z"}),
        ("/v1/metrics/deployments/dep-x", {"since": "9999-12-31T23:59:59-23:59"}),
    ],
)
def test_extreme_dates_are_422s(shared_metrics: MetricsProcess, route: str, params: dict[str, str]) -> None:
    response = httpx.get(shared_metrics.url + route, params=params, headers=ISSUER.headers("u", "o", "admin"))
    assert response.status_code == 422, response.text  # audit M9: 500 (OverflowError)
    assert response.json()["error"]["code"] == "validation_error"
