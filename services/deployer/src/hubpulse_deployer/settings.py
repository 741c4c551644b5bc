"""Settings of the deployer service (`HUBPULSE_*` environment variables)."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr

from hubpulse_common.settings import ServiceSettings


class DeployerSettings(ServiceSettings, service="deployer", port=8005):
    data_dir: Path = Path.home() / ".cache" / "hubpulse"
    # the variable huggingface_hub itself reads, so one setting points both at the same Hub
    hf_endpoint: str = Field(
        "https://huggingface.co", validation_alias=AliasChoices("HUBPULSE_HF_ENDPOINT", "HF_ENDPOINT")
    )
    # the platform's own token: Space management, and downloads of public, ungated models only. None: no token
    # is sent (the real Hub answers a wrong token with 401 even on public repos)
    hf_token: SecretStr | None = Field(None, validation_alias=AliasChoices("HUBPULSE_HF_TOKEN", "HF_TOKEN"))
    hf_space_namespace: str = "hubpulse"
    provision_timeout_s: float = 180.0
    model_server_host: str = "127.0.0.1"
    # Model servers take only callers with their token, derived from this secret. Local: shared with the gateway
    # (its HUBPULSE_MODEL_SERVER_SECRET), which then calls them itself where it reaches `model_server_host` (one
    # machine: `hubpulse up`); unset, each local server gets a random token only this deployer knows. Kubernetes:
    # the pods' token (in each deployment's Secret); unset, they take any caller the NetworkPolicy admits.
    model_server_secret: SecretStr | None = None
    predict_timeout_s: float = 30.0
    # answers kept for callers' Idempotency-Keys (idempotency.py): bounded in bytes, expiring
    idempotency_cache_bytes: int = Field(64 * 1024 * 1024, ge=0)
    idempotency_ttl_s: float = Field(600.0, gt=0)
    # predict reads its deployment from memory when this fresh (this process's own writes refresh it at once)
    predict_doc_max_age_s: float = Field(1.0, ge=0)
    space_poll_s: float = 2.0
    lambda_role_name: str = "hubpulse-model-server"
    # Lambda and IAM have endpoints and credentials of their own: the S3 ones point at S3 and are mounted into every
    # service. Unset endpoint: AWS's for the region; unset keys: boto3's credential chain (IRSA, instance role).
    lambda_endpoint: str | None = None
    iam_endpoint: str | None = None
    aws_region: str | None = None
    aws_access_key_id: SecretStr | None = None
    aws_secret_access_key: SecretStr | None = None
    # ARNs of layers holding torch and transformers for the handler (built from the package's requirements.txt)
    lambda_layers: list[str] = []
    # a kubeconfig file; without one, the pod's service account where the deployer runs in a cluster
    kubeconfig: Path | None = None
    kubernetes_namespace: str = "default"
    # The cluster serves `hubpulse_inflight_requests` (each model server's /metrics) through the custom metrics
    # API (prometheus-adapter, deploy/k8s/README.md): the HPAs then also scale on requests in flight. Off, an HPA
    # naming a metric nobody serves could never scale down, so they scale on CPU alone.
    kubernetes_custom_metrics: bool = False
    # The kubernetes target's model server image. Unset: the deployer's own (its image carries the model server),
    # read from its pod (HUBPULSE_POD_NAME, the downward API's metadata.name), so an overlay's `images:` moves both.
    model_server_image: str | None = None
    pod_name: str | None = None
    resource_poll_s: float = 1.0
    # Per-organisation limits (a user without an organisation counts as one); a request over one is answered 4xx
    # naming the setting. Active deployments are pending, provisioning or running ones.
    max_deployments_per_org: int = Field(10, ge=1)
    # memory_mb x max_replicas summed over active deployments
    max_memory_mb_per_org: int = Field(16384, ge=128)
    # Space hardware billed to the operator's Hub account: GPU flavours only where the operator lists them
    allowed_hardware: list[str] = ["cpu-basic", "cpu-upgrade"]
    # what one deployment downloads (the files its runtime loads; the whole repo where the Hub gives no sizes)
    max_model_bytes: int = Field(4 * 1024**3, ge=1)

    def hub_token(self) -> str | bool:
        """The platform token as huggingface_hub takes it: False sends none (None would fall back to a token saved
        on the machine)."""
        return self.hf_token.get_secret_value() if self.hf_token is not None else False
