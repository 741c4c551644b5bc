"""docs/asyncapi.yaml documents every topic, is current with the event models, and its references resolve."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from hubpulse_common.asyncapi import render
from hubpulse_common.events import ALL_TOPICS, dlq_topic

DOC = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.yaml"


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_committed_document_is_current() -> None:
    assert DOC.read_text() == render(), "run `make asyncapi` and commit docs/asyncapi.yaml"


def test_every_topic_and_dlq_is_documented_and_refs_resolve() -> None:
    doc = yaml.safe_load(DOC.read_text())
    addresses = {c["address"] for c in doc["channels"].values()}
    sent = {op["channel"]["$ref"] for op in doc["operations"].values() if op["action"] == "send"}
    for topic in ALL_TOPICS:
        assert f"#/channels/{topic.replace('.', '_')}" in sent, f"{topic} has no publisher"
        assert {topic, dlq_topic(topic)} <= addresses
    for ref in _refs(doc):
        node: Any = doc
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
        assert node, ref
    for message in doc["components"]["messages"].values():
        payload = doc["components"]["schemas"][message["payload"]["$ref"].rsplit("/", 1)[1]]
        assert "schema_version" in payload["properties"]
