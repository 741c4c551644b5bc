"""Deployment lifecycle as plain functions on typed documents: the state machine, versions, public views."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict, Unpack

from hubpulse_common.events import DeploymentEvent, DeploymentStatus
from hubpulse_deployer.documents import Deployment, Endpoint, TransitionEntry, Version
from hubpulse_deployer.schemas import DeploymentConfig

S = DeploymentStatus

# Which states each state may move to. `running -> provisioning` is a new version (update or rollback);
# `provisioning -> pending` is a target that prepared everything but has nowhere to run it (kubernetes, no cluster).
TRANSITIONS: dict[DeploymentStatus, frozenset[DeploymentStatus]] = {
    S.PENDING: frozenset({S.PROVISIONING, S.FAILED, S.DELETED}),
    S.PROVISIONING: frozenset({S.PENDING, S.RUNNING, S.FAILED, S.STOPPED, S.DELETED}),
    S.RUNNING: frozenset({S.PROVISIONING, S.FAILED, S.STOPPED, S.DELETED}),
    S.FAILED: frozenset({S.PROVISIONING, S.DELETED}),
    S.STOPPED: frozenset({S.PROVISIONING, S.DELETED}),
    S.DELETED: frozenset(),
}


class InvalidTransition(ValueError):
    pass


class UnknownVersion(ValueError):
    pass


class OverLimit(ValueError):
    """A request beyond a per-organisation limit; the message names the limit and its setting."""


class HardwareNotAllowed(OverLimit):
    pass


class QuotaExceeded(OverLimit):
    pass


# the API's JSON shape of a deployment (`public_view`)
DeploymentView = dict[str, Any]

ACTIVE: tuple[DeploymentStatus, ...] = (S.PENDING, S.PROVISIONING, S.RUNNING)


def memory_mb(config: DeploymentConfig) -> int:
    """The memory a version may take at its largest: every replica it can scale to."""
    return config.memory_mb * max(1, config.autoscaling.max_replicas)


def check_limits(
    config: DeploymentConfig,
    active: list[DeploymentConfig],
    *,
    max_deployments: int | None,
    max_memory_mb: int,
    allowed_hardware: list[str],
) -> None:
    """Refuse a version whose org already has `active` deployments (their current configs, not counting the one
    being changed) when it goes over a limit. `max_deployments` None: an existing deployment changes, the count
    does not grow."""
    if config.hardware not in allowed_hardware:
        raise HardwareNotAllowed(
            f"hardware {config.hardware!r} is not offered here; allowed: "
            f"{', '.join(allowed_hardware)} (HUBPULSE_ALLOWED_HARDWARE)",
        )
    if max_deployments is not None and len(active) >= max_deployments:
        raise QuotaExceeded(
            f"the organisation has {len(active)} active deployments, the limit "
            f"(HUBPULSE_MAX_DEPLOYMENTS_PER_ORG) is {max_deployments}",
        )
    used = sum(memory_mb(other) for other in active)
    wanted = memory_mb(config)
    if used + wanted > max_memory_mb:
        raise QuotaExceeded(
            f"{wanted} MB (memory_mb x max_replicas) on top of the organisation's "
            f"{used} MB in use is over the limit (HUBPULSE_MAX_MEMORY_MB_PER_ORG) of {max_memory_mb} MB",
        )


@dataclass(frozen=True)
class Transition:
    """What to write (guarded by the sequence read) and what to publish. `endpoint` None: the stored one stays."""

    expected_sequence: int
    entry: TransitionEntry
    endpoint: Endpoint | None
    event: DeploymentEvent


def new_deployment(
    *,
    model_id: str,
    revision: str,
    target: str,
    task: str,
    config: DeploymentConfig,
    user_id: str | None,
    org_id: str | None,
    now: datetime,
) -> Deployment:
    return Deployment(
        id=uuid.uuid4().hex,
        model_id=model_id,
        task=task,
        target=target,
        status=S.PENDING,
        sequence=0,
        version=1,
        versions=[Version(version=1, revision=revision, config=config, created_at=now, source="create")],
        transitions=[TransitionEntry(sequence=0, status=S.PENDING, previous=None, reason=None, version=1, at=now)],
        user_id=user_id,
        org_id=org_id,
        created_at=now,
        updated_at=now,
    )


class Change(TypedDict, total=False):
    """What a transition carries besides its new status (Orchestrator.transition hands it on to plan_transition)."""

    reason: str | None
    # the deployment's endpoint, written with the transition (absent: the stored one stays)
    endpoint: Endpoint | None
    # a new version, added by the transition and current from it on
    push_version: Version | None


def plan_transition(doc: Deployment, to: DeploymentStatus, *, now: datetime, **change: Unpack[Change]) -> Transition:
    """The next state of `doc`, or `InvalidTransition`; the endpoint and the pushed version, where given, are written
    too."""
    current = doc.status
    if to not in TRANSITIONS[current]:
        raise InvalidTransition(f"a {current.value} deployment cannot become {to.value}")
    sequence = doc.sequence + 1
    reason, pushed = change.get("reason"), change.get("push_version")
    version = doc.current if pushed is None else pushed
    number, revision = version.version, version.revision
    entry = TransitionEntry(sequence=sequence, status=to, previous=current, reason=reason, version=number, at=now)
    event = DeploymentEvent(
        deployment_id=doc.id,
        sequence=sequence,
        model_id=doc.model_id,
        revision=revision,
        target=doc.target,
        status=to,
        previous_status=current,
        reason=reason,
        version=number,
        user_id=doc.user_id,
        org_id=doc.org_id,
        occurred_at=now,
    )
    return Transition(doc.sequence, entry, change.get("endpoint"), event)


def add_version(
    doc: Deployment, *, revision: str | None, config: DeploymentConfig | None, source: str, now: datetime
) -> Version:
    """A new version entry built on the current one (unset parts carried over)."""
    base = doc.current
    return Version(
        version=max(v.version for v in doc.versions) + 1,
        revision=revision if revision is not None else base.revision,
        config=config if config is not None else base.config,
        created_at=now,
        source=source,
    )


def rollback_version(doc: Deployment, to_version: int | None, now: datetime) -> Version:
    """A new version that copies an earlier one (the one before the current, by default)."""
    versions = {v.version: v for v in doc.versions}
    target = to_version if to_version is not None else doc.version - 1
    if target not in versions or target == doc.version:
        raise UnknownVersion(
            f"no earlier version {target} to roll back to (versions: {sorted(versions)}, current {doc.version})"
        )
    old = versions[target]
    return add_version(doc, revision=old.revision, config=old.config, source=f"rollback:{target}", now=now)


def _redacted(config: DeploymentConfig) -> dict[str, Any]:
    return {**config.model_dump(), "secrets": sorted(config.secrets)}


def _version_view(version: Version) -> dict[str, Any]:
    return {**version.model_dump(), "config": _redacted(version.config), "created_at": version.created_at.isoformat()}


def public_view(doc: Deployment, resources: dict[str, float] | None = None) -> DeploymentView:
    """The API shape of a deployment: secrets reduced to their names, times as ISO strings."""
    version = doc.current
    return {
        "id": doc.id,
        "model_id": doc.model_id,
        "task": doc.task,
        "target": doc.target,
        "status": doc.status.value,
        "reason": doc.reason,
        "version": doc.version,
        "revision": version.revision,
        "config": _redacted(version.config),
        "versions": [_version_view(v) for v in doc.versions],
        "endpoint": doc.endpoint,
        "transitions": [{**t.model_dump(), "at": t.at.isoformat()} for t in doc.transitions],
        "resources": resources,
        "user_id": doc.user_id,
        "org_id": doc.org_id,
        "created_at": doc.created_at.isoformat(),
        "updated_at": doc.updated_at.isoformat(),
    }
