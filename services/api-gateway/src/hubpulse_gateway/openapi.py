"""One OpenAPI document for the gateway: every route's errors are the shared `{"error": {...}}` body."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from hubpulse_gateway.catalog.schemas import ErrorBody

ERROR_REF = "#/components/schemas/ErrorBody"
_FASTAPI_VALIDATION = ("HTTPValidationError", "ValidationError")


def install_openapi(app: FastAPI) -> None:
    """Replace FastAPI's own 422 body (which the gateway never sends) with the shared error body, everywhere."""

    def build() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.setdefault("ErrorBody", ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}"))
        for name, sub in (
            ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}").get("$defs", {}).items()
        ):
            components.setdefault(name, sub)
        components["ErrorBody"].pop("$defs", None)
        for path_item in schema.get("paths", {}).values():
            for operation in path_item.values():
                responses = operation.get("responses", {})
                for status, response in responses.items():
                    if status.startswith(("4", "5")):
                        response["content"] = {"application/json": {"schema": {"$ref": ERROR_REF}}}
        for name in _FASTAPI_VALIDATION:
            components.pop(name, None)
        app.openapi_schema = schema
        return schema

    app.openapi = build  # type: ignore[method-assign]
