"""Settings of the deployer service (`HUBPULSE_*` environment variables)."""

from __future__ import annotations

from hubpulse_common.settings import ServiceSettings


class DeployerSettings(ServiceSettings):
    service_name: str = "deployer"
    port: int = 8005
