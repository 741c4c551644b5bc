"""docs/openapi.json is the gateway's OpenAPI document as the code builds it, and says how to authenticate."""

from __future__ import annotations

import json
from pathlib import Path

from openapi_spec_validator import validate

from hubpulse_gateway.openapi_document import render

DOC = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def test_committed_document_is_current() -> None:
    assert DOC.read_text() == render(), "run `make openapi` and commit docs/openapi.json"


def test_security_schemes_are_declared_and_used() -> None:
    doc = json.loads(DOC.read_text())
    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": schemes["bearerAuth"]["description"],
    }
    assert schemes["apiKeyAuth"]["in"] == "header"
    assert schemes["apiKeyAuth"]["name"] == "X-API-Key"
    assert schemes["cookieAuth"]["in"] == "cookie"
    assert schemes["cookieAuth"]["name"] == "hp_access"
    assert schemes["csrfToken"]["name"] == "x-csrf-token"
    # a private route names every way in; a public one none
    assert {next(iter(s)) for s in doc["paths"]["/v1/deployments"]["post"]["security"]} == set(schemes)
    assert "security" not in doc["paths"]["/v1/models"]["get"]


def test_document_is_valid_openapi() -> None:
    validate(json.loads(DOC.read_text()))
