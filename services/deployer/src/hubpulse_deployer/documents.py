"""The deployer's MongoDB documents as types. Only the repository converts them to and from BSON; the stored
shape is the one the deployer always wrote (field names, nesting, status strings), so existing data loads."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from hubpulse_common.events import DeploymentStatus
from hubpulse_deployer.schemas import DeploymentConfig

# What a target returned from provisioning (url, function name, rendered manifests, ...): the target's own JSON,
# stored on the deployment and handed back to that target only.
Endpoint = dict[str, Any]


class _Stored(BaseModel):
    # a field a newer deployer adds is ignored by an older one (BSON writes a status, a StrEnum, as its string)
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    def to_mongo(self) -> dict[str, Any]:
        document: dict[str, Any] = self.model_dump(by_alias=True)
        return document


class Version(_Stored):
    """One version of a deployment: what runs (revision) and how (config)."""

    version: int
    revision: str
    config: DeploymentConfig
    created_at: datetime
    source: str


class TransitionEntry(_Stored):
    """One line of a deployment's state history."""

    sequence: int
    status: DeploymentStatus
    previous: DeploymentStatus | None
    reason: str | None
    version: int
    at: datetime


class Deployment(_Stored):
    id: str = Field(alias="_id")
    model_id: str
    task: str
    target: str
    status: DeploymentStatus
    reason: str | None = None
    sequence: int
    version: int
    versions: list[Version]
    endpoint: Endpoint | None = None
    transitions: list[TransitionEntry] = Field(default_factory=list)
    user_id: str | None = None
    org_id: str | None = None
    created_at: datetime
    updated_at: datetime

    @property
    def current(self) -> Version:
        return next(v for v in self.versions if v.version == self.version)


class ActiveVersion(BaseModel):
    """An active deployment as the organisation's limits see it: its id and current config."""

    id: str
    config: DeploymentConfig
