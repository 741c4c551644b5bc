"""Request and response bodies of the deployer API (the gateway forwards them as they are)."""

from __future__ import annotations

from typing import Annotated, Literal

from huggingface_hub.utils import validate_repo_id  # type: ignore[attr-defined]  # public, not in __all__
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from hubpulse_common.inference import MAX_BATCH

Target = Literal["local", "hf-space", "aws-lambda", "kubernetes"]
REPO_ID = r"^[A-Za-z0-9][\w.-]{0,95}(/[\w.-]{1,96})?$"
# Variable names as a shell, Kubernetes, Lambda and a Space all accept them (no NUL, no `$`, no `.`), and sizes
# far below Mongo's 16 MiB document and Lambda's 4 KiB environment.
VARIABLE_NAME = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=128)]
VARIABLE_VALUE = Annotated[str, StringConstraints(max_length=4096)]


def _revision(value: str) -> str:
    if ".." in value.split("/") or value.startswith("/") or value.endswith("/"):
        raise ValueError("a revision is a branch, tag or commit: no empty or '..' path segments")
    return value


Revision = Annotated[str, Field(max_length=100, pattern=r"^[\w./-]+$"), AfterValidator(_revision)]


def hub_repo_id(value: str) -> str:
    """The Hub's own rules ('--', '..', a trailing '-' or '.git' are refused): a 422 here, not a 500 from the
    Hub client later (security audit M9)."""
    validate_repo_id(value)  # HFValidationError is a ValueError: pydantic reports it as a 422
    return value


RepoId = Annotated[str, Field(pattern=REPO_ID, max_length=200), AfterValidator(hub_repo_id)]


class Autoscaling(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_replicas: int = Field(1, ge=0, le=100)
    max_replicas: int = Field(1, ge=1, le=100)
    target_concurrency: int = Field(
        4,
        ge=1,
        le=1000,
        description="in-flight requests per replica to scale at (kubernetes, where the cluster serves the model "
        "servers' custom metric; else the HPA scales on CPU)",
    )

    @model_validator(mode="after")
    def _ordered(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must not exceed max_replicas")
        return self


class Batching(BaseModel):
    """Dynamic batching in the model server: concurrent calls share one forward pass."""

    model_config = ConfigDict(extra="forbid")

    max_batch_size: int = Field(16, ge=1, le=MAX_BATCH, description="inputs per forward pass; 1 turns batching off")
    max_wait_ms: float = Field(
        0.0,
        ge=0,
        le=100,
        description="how long a call waits for others to join its batch (0: calls that queue "
        "while a forward pass runs form the next batch)",
    )


class DeploymentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    autoscaling: Autoscaling = Field(default_factory=Autoscaling)
    hardware: str = Field("cpu-basic", max_length=40, description="Space hardware flavor (hf-space)")
    memory_mb: int = Field(1024, ge=128, le=10240, description="memory per replica (aws-lambda, kubernetes)")
    timeout_s: int = Field(60, ge=1, le=900, description="function timeout (aws-lambda)")
    cpu_target_percent: int = Field(70, ge=10, le=100, description="CPU utilization to scale at (kubernetes)")
    batching: Batching = Field(default_factory=Batching)
    env: dict[VARIABLE_NAME, VARIABLE_VALUE] = Field(
        default_factory=dict, max_length=50, description="public variables"
    )
    secrets: dict[VARIABLE_NAME, VARIABLE_VALUE] = Field(
        default_factory=dict,
        max_length=50,
        description="write-only; never read back. HF_TOKEN: your own Hub token, to deploy private or gated models",
    )


class CreateDeployment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_id: RepoId
    revision: Revision = "main"
    target: Target = "local"
    config: DeploymentConfig = Field(default_factory=DeploymentConfig)


class UpdateDeployment(BaseModel):
    """A new version: a new revision and/or a new config."""

    model_config = ConfigDict(extra="forbid")

    revision: Revision | None = None
    config: DeploymentConfig | None = None


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int | None = Field(None, ge=1, description="the version to go back to; default: the one before")
