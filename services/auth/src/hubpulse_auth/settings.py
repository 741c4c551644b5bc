"""Settings of the auth service (`HUBPULSE_*` environment variables)."""

from __future__ import annotations

from hubpulse_common.settings import ServiceSettings


class AuthSettings(ServiceSettings):
    service_name: str = "auth"
    port: int = 8001
