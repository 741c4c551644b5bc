"""Schemathesis over the gateway's own OpenAPI document, against the real process: no 5xx, no schema violation."""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from gateway.gateway_process import Gateway

# The catalog routes need no upstream service; auth, deployment and metrics routes have their own tests.
OPERATIONS = ("/v1/models", "/v1/models/{model_id}", "/v1/picks")
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


def test_the_document_declares_the_shared_error_body(gateway: Gateway) -> None:
    document = httpx.get(gateway.url + "/openapi.json", timeout=30).raise_for_status().json()
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for path in OPERATIONS:
        responses = document["paths"][path]["get"]["responses"]
        assert responses["422"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}


@pytest.mark.parametrize("path", OPERATIONS)
def test_catalog_route_fuzz_clean(gateway: Gateway, path: str) -> None:
    document = httpx.get(gateway.url + "/openapi.json", timeout=30).raise_for_status().json()
    operation = schemathesis.openapi.from_dict(document)[path]["GET"]

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(operation.as_strategy())
    def check(case: schemathesis.Case) -> None:
        case.validate_response(case.call(base_url=gateway.url), checks=CHECKS)

    check()
