"""Is a new event schema safe for consumers written against the released one? (`make event-schemas`)

The rule is the one docs/asyncapi.yaml states: within a topic, changes are additive only. Seen from a
consumer, every value the new schema allows must have been allowed by the released schema, and every field
the released schema promised must still be there. So a new field is fine; a removed, renamed, retyped or
newly nullable field, a new enum value, a loosened bound or a changed format is breaking.

Only the JSON Schema vocabulary pydantic emits for our events is understood (type, anyOf/oneOf, enum,
const, format, bounds, items, properties, required, additionalProperties, $ref into $defs); anything
else is compared for equality, so an unknown keyword errs on the side of "breaking".

Written here rather than taken from a library: the general JSON Schema diff tools on PyPI diff the schema
*document* (a new `anyOf` branch reads as "field added"), not the set of values it admits.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from hubpulse_common.events import ALL_EVENTS, event_schema

Schema = dict[str, Any]

_LOWER_BOUNDS = ("minimum", "exclusiveMinimum", "minLength", "minItems")
_UPPER_BOUNDS = ("maximum", "exclusiveMaximum", "maxLength", "maxItems")
_UNDERSTOOD = {
    "type",
    "anyOf",
    "oneOf",
    "enum",
    "const",
    "format",
    "items",
    "properties",
    "required",
    "additionalProperties",
    "$ref",
    "$defs",
    *_LOWER_BOUNDS,
    *_UPPER_BOUNDS,
}
# Documentation keywords: changing them changes no value a consumer can receive.
_ANNOTATIONS = {"title", "description", "default", "examples"}


class _Doc:
    """One schema document, for resolving its `#/$defs/...` references."""

    def __init__(self, root: Schema) -> None:
        self.defs: dict[str, Schema] = root.get("$defs", {})

    def resolve(self, node: Schema) -> Schema:
        while "$ref" in node:
            node = self.defs[node["$ref"].rsplit("/", 1)[1]]
        return node

    def alternatives(self, node: Schema) -> list[Schema]:
        """A schema as the list of branches any one of which a value may match."""
        node = self.resolve(node)
        branches = node.get("anyOf") or node.get("oneOf")
        if branches:
            return [alt for branch in branches for alt in self.alternatives(branch)]
        types = node.get("type")
        if isinstance(types, list):
            return [{**node, "type": t} for t in types]
        return [node]


def _type_covered(old: str | None, new: str | None) -> bool:
    return old is None or old == new or (old == "number" and new == "integer")


def _bounds_covered(old: Schema, new: Schema) -> bool:
    """A bound the released schema had is kept, or tightened."""
    lower = all(key in new and new[key] >= old[key] for key in _LOWER_BOUNDS if key in old)
    return lower and all(key in new and new[key] <= old[key] for key in _UPPER_BOUNDS if key in old)


class _Checker:
    def __init__(self, old_root: Schema, new_root: Schema) -> None:
        self.old, self.new = _Doc(old_root), _Doc(new_root)
        self.problems: list[str] = []

    def value(self, path: str, old: Schema, new: Schema) -> None:
        """Every value `new` admits must be admitted by `old`."""
        old_alts = self.old.alternatives(old)
        for alt in self.new.alternatives(new):
            if not any(self._covers(o, alt) for o in old_alts):
                self.problems.append(f"{path}: now admits {_describe(alt)}, which the released schema does not")
                continue
            covering = next(o for o in old_alts if self._covers(o, alt))
            self._nested(path, covering, alt)

    def _covers(self, old: Schema, new: Schema) -> bool:
        if not _type_covered(old.get("type"), new.get("type")):
            return False
        if "enum" in old:
            values = new["enum"] if "enum" in new else [new["const"]] if "const" in new else None
            if values is None or not {_key(v) for v in values} <= {_key(v) for v in old["enum"]}:
                return False
        if "const" in old and new.get("const", object()) != old["const"]:
            return False
        if "format" in old and new.get("format") != old["format"]:
            return False
        unknown = {k for k in old if k not in _UNDERSTOOD | _ANNOTATIONS}
        return _bounds_covered(old, new) and all(old[k] == new.get(k) for k in unknown)

    def _nested(self, path: str, old: Schema, new: Schema) -> None:
        if "items" in old:
            self.value(f"{path}[]", old["items"], new.get("items", {}))
        if isinstance(old.get("additionalProperties"), dict):
            extra = new.get("additionalProperties", {})
            self.value(f"{path}{{}}", old["additionalProperties"], extra if isinstance(extra, dict) else {})
        if "properties" in old:
            self.object(path, old, new)

    def object(self, path: str, old: Schema, new: Schema) -> None:
        old, new = self.old.resolve(old), self.new.resolve(new)
        new_props = new.get("properties", {})
        for name in old.get("required", []):
            if name not in new.get("required", []):
                self.problems.append(f"{path}.{name}: was always present, is no longer required or was removed")
        for name, old_prop in old.get("properties", {}).items():
            if name in new_props:
                self.value(f"{path}.{name}", old_prop, new_props[name])
            else:
                self.problems.append(f"{path}.{name}: removed")


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _describe(node: Schema) -> str:
    shown = {k: v for k, v in node.items() if k not in _ANNOTATIONS}
    return json.dumps(shown, sort_keys=True)


def breaking_changes(released: Schema, current: Schema) -> list[str]:
    """What in `current` breaks a consumer written against `released` (empty when compatible)."""
    checker = _Checker(released, current)
    checker.object("$", released, current)
    return checker.problems


SNAPSHOT_DIR = Path(__file__).resolve().parents[4] / "docs" / "events"


def snapshot_path(topic: str, directory: Path = SNAPSHOT_DIR) -> Path:
    return directory / f"{topic}.schema.json"


def write_missing_snapshots(directory: Path = SNAPSHOT_DIR) -> list[str]:
    """Record the schema of every topic that has none yet (a new topic is released by committing it)."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for event in ALL_EVENTS:
        path = snapshot_path(event.topic, directory)
        if not path.exists():
            path.write_text(json.dumps(event_schema(event), indent=2, sort_keys=True) + "\n")
            written.append(event.topic)
    return written


def check_all(directory: Path = SNAPSHOT_DIR) -> dict[str, list[str]]:
    """Breaking changes per topic, against the released snapshots; a topic without one is reported too."""
    report: dict[str, list[str]] = {}
    for event in ALL_EVENTS:
        path = snapshot_path(event.topic, directory)
        if not path.exists():
            report[event.topic] = [f"no released schema at {path}: run `make event-schemas` and commit it"]
            continue
        problems = breaking_changes(json.loads(path.read_text()), event_schema(event))
        if problems:
            report[event.topic] = problems
    return report


def main() -> int:
    written = write_missing_snapshots()
    for topic in written:
        print(f"released {topic} -> {snapshot_path(topic)}")
    report = check_all()
    for topic, problems in report.items():
        for problem in problems:
            print(f"BREAKING {topic} {problem}", file=sys.stderr)
    return 1 if report else 0


if __name__ == "__main__":
    sys.exit(main())
