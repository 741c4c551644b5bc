"""Deployment lifecycle as plain functions on plain documents: the state machine, versions, public views."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hubpulse_common.events import DeploymentEvent, DeploymentStatus

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


ACTIVE: tuple[DeploymentStatus, ...] = (S.PENDING, S.PROVISIONING, S.RUNNING)


def memory_mb(config: dict[str, Any]) -> int:
    """The memory a version may take at its largest: every replica it can scale to."""
    return int(config.get("memory_mb", 1024)) * max(1, int(config.get("autoscaling", {}).get("max_replicas", 1)))


def check_limits(
    config: dict[str, Any],
    active: list[dict[str, Any]],
    *,
    max_deployments: int | None,
    max_memory_mb: int,
    allowed_hardware: list[str],
) -> None:
    """Refuse a version whose org already has `active` deployments (not counting the one being changed) when it
    goes over a limit. `max_deployments` None: an existing deployment changes, the count does not grow."""
    hardware = config.get("hardware", "cpu-basic")
    if hardware not in allowed_hardware:
        raise HardwareNotAllowed(
            f"hardware {hardware!r} is not offered here; allowed: "
            f"{', '.join(allowed_hardware)} (HUBPULSE_ALLOWED_HARDWARE)",
        )
    if max_deployments is not None and len(active) >= max_deployments:
        raise QuotaExceeded(
            f"the organisation has {len(active)} active deployments, the limit "
            f"(HUBPULSE_MAX_DEPLOYMENTS_PER_ORG) is {max_deployments}",
        )
    used = sum(memory_mb(current_version(doc)["config"]) for doc in active)
    wanted = memory_mb(config)
    if used + wanted > max_memory_mb:
        raise QuotaExceeded(
            f"{wanted} MB (memory_mb x max_replicas) on top of the organisation's "
            f"{used} MB in use is over the limit (HUBPULSE_MAX_MEMORY_MB_PER_ORG) of {max_memory_mb} MB",
        )


@dataclass(frozen=True)
class Transition:
    """What to write (guarded by the sequence read) and what to publish."""

    expected_sequence: int
    set_fields: dict[str, Any]
    log_entry: dict[str, Any]
    event: DeploymentEvent


def new_deployment(
    *,
    model_id: str,
    revision: str,
    target: str,
    task: str,
    config: dict[str, Any],
    user_id: str | None,
    org_id: str | None,
    now: datetime,
) -> dict[str, Any]:
    return {
        "_id": uuid.uuid4().hex,
        "model_id": model_id,
        "task": task,
        "target": target,
        "status": S.PENDING.value,
        "reason": None,
        "sequence": 0,
        "version": 1,
        "versions": [{"version": 1, "revision": revision, "config": config, "created_at": now, "source": "create"}],
        "endpoint": None,
        "transitions": [
            {"sequence": 0, "status": S.PENDING.value, "previous": None, "reason": None, "version": 1, "at": now}
        ],
        "user_id": user_id,
        "org_id": org_id,
        "created_at": now,
        "updated_at": now,
    }


def current_version(doc: dict[str, Any]) -> dict[str, Any]:
    version: dict[str, Any] = next(v for v in doc["versions"] if v["version"] == doc["version"])
    return version


def plan_transition(
    doc: dict[str, Any], to: DeploymentStatus, *, now: datetime, reason: str | None = None, **fields: Any
) -> Transition:
    """The next state of `doc`, or `InvalidTransition`. Extra `fields` are written alongside (endpoint, ...)."""
    current = S(doc["status"])
    if to not in TRANSITIONS[current]:
        raise InvalidTransition(f"a {current.value} deployment cannot become {to.value}")
    sequence = int(doc["sequence"]) + 1
    version = int(fields.get("version", doc["version"]))
    revision = next(v["revision"] for v in doc["versions"] if v["version"] == version)
    entry = {
        "sequence": sequence,
        "status": to.value,
        "previous": current.value,
        "reason": reason,
        "version": version,
        "at": now,
    }
    event = DeploymentEvent(
        deployment_id=doc["_id"],
        sequence=sequence,
        model_id=doc["model_id"],
        revision=revision,
        target=doc["target"],
        status=to,
        previous_status=current,
        reason=reason,
        version=version,
        user_id=doc.get("user_id"),
        org_id=doc.get("org_id"),
        occurred_at=now,
    )
    set_fields = {"status": to.value, "reason": reason, "sequence": sequence, "updated_at": now, **fields}
    return Transition(doc["sequence"], set_fields, entry, event)


def add_version(
    doc: dict[str, Any], *, revision: str | None, config: dict[str, Any] | None, source: str, now: datetime
) -> dict[str, Any]:
    """A new version entry built on the current one (unset parts carried over)."""
    base = current_version(doc)
    number = max(v["version"] for v in doc["versions"]) + 1
    return {
        "version": number,
        "revision": revision if revision is not None else base["revision"],
        "config": config if config is not None else base["config"],
        "created_at": now,
        "source": source,
    }


def rollback_version(doc: dict[str, Any], to_version: int | None, now: datetime) -> dict[str, Any]:
    """A new version that copies an earlier one (the one before the current, by default)."""
    versions = {v["version"]: v for v in doc["versions"]}
    target = to_version if to_version is not None else doc["version"] - 1
    if target not in versions or target == doc["version"]:
        raise UnknownVersion(
            f"no earlier version {target} to roll back to (versions: {sorted(versions)}, current {doc['version']})"
        )
    old = versions[target]
    return add_version(doc, revision=old["revision"], config=old["config"], source=f"rollback:{target}", now=now)


def _redacted(config: dict[str, Any]) -> dict[str, Any]:
    return {**config, "secrets": sorted(config.get("secrets", {}))}


def public_view(doc: dict[str, Any], resources: dict[str, Any] | None = None) -> dict[str, Any]:
    """The API shape of a deployment: secrets reduced to their names, times as ISO strings."""
    version = current_version(doc)
    return {
        "id": doc["_id"],
        "model_id": doc["model_id"],
        "task": doc["task"],
        "target": doc["target"],
        "status": doc["status"],
        "reason": doc.get("reason"),
        "version": doc["version"],
        "revision": version["revision"],
        "config": _redacted(version["config"]),
        "versions": [
            {**v, "config": _redacted(v["config"]), "created_at": v["created_at"].isoformat()} for v in doc["versions"]
        ],
        "endpoint": doc.get("endpoint"),
        "transitions": [{**t, "at": t["at"].isoformat()} for t in doc.get("transitions", [])],
        "resources": resources,
        "user_id": doc.get("user_id"),
        "org_id": doc.get("org_id"),
        "created_at": doc["created_at"].isoformat(),
        "updated_at": doc["updated_at"].isoformat(),
    }
