"""The shared HTTP layer: an unexpected error is a JSON 500 that carries its request id and is counted."""

from __future__ import annotations

import asyncpg
import httpx
from auth.conftest import serving  # tests/auth/conftest.py (pytest puts tests/ on sys.path)

from hubpulse_common.http import NamedError, NotFound, create_service_app


async def test_an_unhandled_error_is_a_json_500_with_its_request_id() -> None:
    app = create_service_app(service="probe", title="probe")

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("a bug")

    async with serving(app) as url, httpx.AsyncClient(base_url=url) as client:
        response = await client.get("/boom", headers={"x-request-id": "trace-123"})
        metrics = (await client.get("/metrics")).text
    assert response.status_code == 500
    assert response.json() == {
        "error": {"code": "internal", "message": "internal error; the request id is in the x-request-id header"}
    }
    assert response.headers["x-request-id"] == "trace-123"
    assert 'method="GET",route="/boom",service="probe",status="500"' in metrics


async def test_docs_are_served_without_a_cdn() -> None:
    app = create_service_app(service="probe", title="probe")
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as client:
        page = await client.get("/docs")
        script = await client.get("/docs/assets/swagger-ui-bundle.js")
        redoc = await client.get("/redoc")
    assert page.status_code == 200
    assert "/docs/assets/swagger-ui-bundle.js" in page.text
    assert "cdn." not in page.text
    assert script.status_code == 200
    assert "SwaggerUIBundle" in script.text
    assert redoc.status_code == 404  # CDN-only: not served


async def test_a_store_not_ready_or_unreachable_is_a_503_with_retry_after() -> None:
    # e.g. the gateway answering before the scorer has migrated the catalog, or PostgreSQL restarting
    app = create_service_app(service="probe", title="probe")

    @app.get("/unmigrated")
    async def unmigrated() -> None:
        raise asyncpg.UndefinedTableError('relation "catalog_models" does not exist')

    @app.get("/refused")
    async def refused() -> None:
        raise ConnectionRefusedError(111, "Connection refused")

    async with serving(app) as url, httpx.AsyncClient(base_url=url) as client:
        for path in ("/unmigrated", "/refused"):
            response = await client.get(path)
            assert response.status_code == 503, path
            assert response.headers["retry-after"] == "5"
            assert response.json()["error"]["code"] == "unavailable"


def test_a_named_error_takes_its_status_and_the_status_code_unless_told() -> None:
    class Gone(NamedError, status=410): ...

    class Expired(Gone, status=410, code="expired"): ...

    class StillGone(Gone): ...

    assert (Gone("x").status, Gone("x").code, Gone("x").message) == (410, "gone", "x")
    assert Expired("x").answer == (410, "expired")
    assert StillGone("x").answer == (410, "gone")
    assert NotFound("x").answer == (404, "not_found")
