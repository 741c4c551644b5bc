"""The Kafka contract consumers rely on: the AsyncAPI document validates with the AsyncAPI parser, every
message carries an example that is a valid event, and no change to a released `v1` schema breaks them."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import date
from pathlib import Path
from typing import Any, ClassVar

import jsonschema
import pytest
import yaml
from pydantic import Field

from hubpulse_common.asyncapi import build_document
from hubpulse_common.events import ALL_EVENTS, ModelScore, event_schema
from hubpulse_common.schema_compat import breaking_changes, check_all, snapshot_path
from hubpulse_common.topology import registered

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "asyncapi.yaml"
PARSER = ROOT / "tools" / "node"


def test_asyncapi_parser_accepts_the_document() -> None:
    if shutil.which("node") is None or not (PARSER / "node_modules").is_dir():
        pytest.fail("the AsyncAPI parser is missing: run `make install` (needs node and npm)")
    result = subprocess.run(
        ["node", str(PARSER / "validate.mjs"), str(DOC)], capture_output=True, text=True, timeout=120, check=False
    )
    report = json.loads(result.stdout)
    assert result.returncode == 0, report["errors"]
    assert report["errors"] == []
    assert report["warnings"] == []
    assert {m["id"] for m in report["messages"]} == {e.__name__ for e in ALL_EVENTS}
    assert all(m["examples"] >= 1 for m in report["messages"]), report["messages"]


def _resolved(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "$defs": components}


def test_every_example_is_a_valid_event_and_matches_its_documented_payload() -> None:
    doc = yaml.safe_load(DOC.read_text())
    components = doc["components"]["schemas"]
    text_refs = json.loads(json.dumps(components).replace("#/components/schemas/", "#/$defs/"))
    for event in ALL_EVENTS:
        message = doc["components"]["messages"][event.__name__]
        payload_schema = _resolved(text_refs[event.__name__], text_refs)
        assert message["examples"], event.__name__
        for example in message["examples"]:
            jsonschema.validate(example["payload"], payload_schema)
            event.model_validate(example["payload"])
        # what a producer really writes satisfies the documented schema, `required` included
        written = json.loads(event.model_validate(message["examples"][0]["payload"]).model_dump_json())
        jsonschema.validate(written, payload_schema)
        assert set(text_refs[event.__name__]["required"]) == set(written), event.__name__


def test_consumer_groups_and_producers_come_from_the_services() -> None:
    topologies = registered()
    assert {t.service for t in topologies} == {
        "api-gateway",
        "auth",
        "deployer",
        "features",
        "ingestor",
        "metrics",
        "scorer",
    }
    operations = build_document(topologies)["operations"]
    receivers = {
        (op["summary"].split()[0], op["channel"]["$ref"]) for op in operations.values() if op["action"] == "receive"
    }
    assert receivers == {(t.service, f"#/channels/{e.topic.replace('.', '_')}") for t in topologies for e in t.consumes}
    # the gateway reads scores from PostgreSQL, not from Kafka (an old hand-kept map said otherwise)
    assert not any(service == "api-gateway" for service, _ in receivers)


def test_released_schemas_are_committed_and_current_schemas_are_compatible() -> None:
    for event in ALL_EVENTS:
        assert snapshot_path(event.topic).exists(), f"run `make event-schemas` to release {event.topic}"
    assert check_all() == {}


class _Retyped(ModelScore):
    """hub.scores.v1 with `probability` as a percentage string: what a careless refactor might do."""

    topic: ClassVar[str] = ModelScore.topic
    probability: str  # type: ignore[assignment]


class _Added(ModelScore):
    topic: ClassVar[str] = ModelScore.topic
    calibrated: bool = Field(default=True, description="a new field: additive, so compatible")


def _released(event_topic: str) -> dict[str, Any]:
    return dict(json.loads(snapshot_path(event_topic).read_text()))


def test_a_retyped_field_in_a_v1_event_is_breaking() -> None:
    problems = breaking_changes(_released(ModelScore.topic), event_schema(_Retyped))
    assert any(p.startswith("$.probability: now admits") for p in problems), problems


def test_an_added_field_is_compatible() -> None:
    assert breaking_changes(_released(ModelScore.topic), event_schema(_Added)) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda s: s["properties"].pop("label") and s["required"].remove("label"), "$.label: removed"),
        (lambda s: s["required"].remove("model_version"), "$.model_version: was always present"),
        (lambda s: s["properties"].update(horizon_days={"anyOf": [{"type": "integer"}, {"type": "null"}]}), "null"),
        (lambda s: s["properties"]["probability"].pop("maximum"), "$.probability: now admits"),
        (lambda s: s["properties"]["snapshot_date"].update(format="date-time"), "$.snapshot_date: now admits"),
        (lambda s: s["$defs"]["Contribution"]["properties"].update(feature={"type": "integer"}), "$.top_features[]"),
    ],
    ids=["removed", "no-longer-required", "made-nullable", "bound-loosened", "format-changed", "nested-retyped"],
)
def test_breaking_changes_are_named(change: Any, expected: str) -> None:
    released = _released(ModelScore.topic)
    current = json.loads(json.dumps(released))
    change(current)
    problems = breaking_changes(released, current)
    assert any(expected in p for p in problems), problems


def test_a_new_enum_value_is_breaking() -> None:
    released = {"type": "object", "properties": {"s": {"enum": ["ok", "error"]}}, "required": ["s"]}
    widened = {"type": "object", "properties": {"s": {"enum": ["ok", "error", "partial"]}}, "required": ["s"]}
    narrowed = {"type": "object", "properties": {"s": {"const": "ok"}}, "required": ["s"]}
    assert breaking_changes(released, widened)
    assert not breaking_changes(released, narrowed)


def test_example_dates_are_plausible() -> None:
    # examples are read by people: keep them looking like real traffic, not 1970
    for event in ALL_EVENTS:
        example = event_schema(event)["examples"][0]
        if "snapshot_date" in example:
            assert date.fromisoformat(example["snapshot_date"]).year >= 2025
