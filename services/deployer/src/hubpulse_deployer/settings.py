"""Settings of the deployer service (`HUBPULSE_*` environment variables)."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr

from hubpulse_common.settings import ServiceSettings


class DeployerSettings(ServiceSettings):
    service_name: str = "deployer"
    port: int = 8005
    data_dir: Path = Path.home() / ".cache" / "hubpulse"
    # the variable huggingface_hub itself reads, so one setting points both at the same Hub
    hf_endpoint: str = Field(
        "https://huggingface.co", validation_alias=AliasChoices("HUBPULSE_HF_ENDPOINT", "HF_ENDPOINT")
    )
    hf_token: SecretStr = Field(
        SecretStr("hf_hubpulse"), validation_alias=AliasChoices("HUBPULSE_HF_TOKEN", "HF_TOKEN")
    )
    hf_space_namespace: str = "hubpulse"
    provision_timeout_s: float = 180.0
    model_server_host: str = "127.0.0.1"
    predict_timeout_s: float = 30.0
    # answers kept for callers' Idempotency-Keys (idempotency.py): bounded in bytes, expiring
    idempotency_cache_bytes: int = Field(64 * 1024 * 1024, ge=0)
    idempotency_ttl_s: float = Field(600.0, gt=0)
    # predict reads its deployment from memory when this fresh (this process's own writes refresh it at once)
    predict_doc_max_age_s: float = Field(1.0, ge=0)
    space_poll_s: float = 2.0
    lambda_role_name: str = "hubpulse-model-server"
    # ARNs of layers holding torch and transformers for the handler (built from the package's requirements.txt)
    lambda_layers: list[str] = []
    kubeconfig: Path | None = None
    kubernetes_namespace: str = "default"
    model_server_image: str = "ghcr.io/hubpulse/model-server:0.1.0"
    resource_poll_s: float = 1.0
