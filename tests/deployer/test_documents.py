"""The deployer's typed documents read what the deployer always stored, and write the same shape back."""

from __future__ import annotations

import datetime as dt

import pytest

from hubpulse_common.events import DeploymentStatus
from hubpulse_deployer.documents import Deployment
from hubpulse_deployer.service import InvalidTransition, plan_transition

AT = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
# a document as the deployer stored it before its documents were typed (an older config: no `batching`)
STORED = {
    "_id": "a" * 32,
    "model_id": "org/model",
    "task": "text-classification",
    "target": "local",
    "status": "running",
    "reason": None,
    "sequence": 2,
    "version": 1,
    "versions": [
        {
            "version": 1,
            "revision": "main",
            "config": {"memory_mb": 512, "autoscaling": {"min_replicas": 1, "max_replicas": 2}, "secrets": {}},
            "created_at": AT,
            "source": "create",
        }
    ],
    "endpoint": {"url": "http://127.0.0.1:1", "pid": 1},
    "transitions": [
        {"sequence": 0, "status": "pending", "previous": None, "reason": None, "version": 1, "at": AT},
        {"sequence": 1, "status": "provisioning", "previous": "pending", "reason": None, "version": 1, "at": AT},
        {"sequence": 2, "status": "running", "previous": "provisioning", "reason": None, "version": 1, "at": AT},
    ],
    "user_id": "u1",
    "org_id": None,
    "created_at": AT,
    "updated_at": AT,
}


def test_a_stored_document_loads_with_the_configs_defaults_and_writes_back_the_same_shape() -> None:
    doc = Deployment.model_validate(STORED)
    assert doc.current.config.batching.max_batch_size == 16
    assert doc.current.config.hardware == "cpu-basic"
    written = doc.to_mongo()
    assert written.keys() == STORED.keys()
    assert written["versions"][0]["config"]["memory_mb"] == 512
    assert {k: v for k, v in written.items() if k != "versions"} == {k: v for k, v in STORED.items() if k != "versions"}


def test_a_transition_follows_the_state_machine() -> None:
    doc = Deployment.model_validate(STORED)
    planned = plan_transition(doc, DeploymentStatus.FAILED, now=AT, reason="exited")
    assert (planned.expected_sequence, planned.entry.sequence, planned.entry.previous) == (2, 3, "running")
    assert planned.event.status == DeploymentStatus.FAILED
    with pytest.raises(InvalidTransition, match="a running deployment cannot become pending"):
        plan_transition(doc, DeploymentStatus.PENDING, now=AT)
