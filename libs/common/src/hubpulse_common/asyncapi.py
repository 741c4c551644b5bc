"""Build the AsyncAPI 3.0 document of every topic from the event models (`python -m hubpulse_common.asyncapi`).

Producers, consumers and consumer groups come from the services' registered topologies
(hubpulse_common.topology), payloads and examples from the event models. The committed docs/asyncapi.yaml
is this module's output; a test fails when they drift apart.
"""

from __future__ import annotations

import sys
from typing import Any

import yaml

from hubpulse_common import __version__
from hubpulse_common.events import ALL_EVENTS, SCHEMA_VERSION_HEADER, Event, dlq_topic, event_schema
from hubpulse_common.logging import TRACE_HEADER
from hubpulse_common.topology import Topology, registered

EVOLUTION_RULES = """\
**Compatibility.** The topic name carries the major version (`hub.scores.v1`), the value's
`schema_version` the minor one. Within a `v1` topic changes are additive only: a new field may appear
(consumers must ignore fields they do not know); no field is removed, renamed, retyped, made nullable,
or given new enum values, and no constraint is loosened. A breaking change gets a new topic (`.v2`),
published beside the old one for a dual-publishing window of at least 30 days (announced in
CHANGELOG.md) before the old topic stops. `docs/events/` holds the released schema of every topic;
`make test` fails on a change that breaks it (tests/common/test_contracts.py)."""

DELIVERY = """\
**Delivery.** At least once. Deduplicate on each event's natural key (named in its description);
hubpulse's own consumers upsert by it, so a redelivered or replayed message changes nothing.
Messages a consumer cannot handle (poison: a value that does not parse or a handler that rejects it)
go to `<topic>.dlq` with the original key, value and the error in headers; transient failures
(a store or the broker unreachable) are retried, never dead-lettered."""

MESSAGE_HEADERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        TRACE_HEADER: {
            "type": "string",
            "description": "Trace id of the request or cycle that caused the event (empty when none); "
            "the same id is in the services' logs and HTTP `x-request-id` answers",
        },
        SCHEMA_VERSION_HEADER: {
            "type": "string",
            "description": "The value's `schema_version` (the minor version; the topic name carries the major one), "
            "so a consumer can route or skip without parsing the value",
        },
    },
    "required": [TRACE_HEADER, SCHEMA_VERSION_HEADER],
}

DLQ_HEADERS = {
    "x-error": "the handler's error message",
    "x-error-type": "exception type, e.g. ValidationError for a value that does not parse",
    "x-original-topic": "topic the message came from",
    "x-original-partition": "its partition",
    "x-original-offset": "its offset",
    "x-failed-at": "ISO-8601 time of dead-lettering",
    "x-consumer-group": "the consumer group that gave up",
}


def _key_description(event: type[Event]) -> str:
    return f"the event's `{event.key_field}`: one {event.key_field.replace('_id', '')}'s events stay ordered"


def _message(event: type[Event], schema: dict[str, Any]) -> dict[str, Any]:
    name = event.__name__
    return {
        "name": name,
        "title": name,
        "summary": (event.__doc__ or "").strip().splitlines()[0],
        "contentType": "application/json",
        "payload": {"$ref": f"#/components/schemas/{name}"},
        "headers": MESSAGE_HEADERS,
        "bindings": {"kafka": {"key": {"type": "string", "description": _key_description(event)}}},
        "examples": [
            {
                "name": f"{name}-{i}",
                "summary": f"A typical {name}",
                "headers": {TRACE_HEADER: "", SCHEMA_VERSION_HEADER: "1"},
                "payload": example,
            }
            for i, example in enumerate(schema.get("examples", []), start=1)
        ],
    }


def _producers(topologies: tuple[Topology, ...]) -> dict[str, str]:
    producers: dict[str, str] = {}
    for topology in topologies:
        for event in topology.publishes:
            if event.topic in producers:
                raise ValueError(f"{event.topic} is published by {producers[event.topic]} and {topology.service}")
            producers[event.topic] = topology.service
    return producers


def build_document(topologies: tuple[Topology, ...] | None = None) -> dict[str, Any]:
    topologies = registered() if topologies is None else topologies
    producers = _producers(topologies)
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for event in ALL_EVENTS:
        name = event.__name__
        schema = event_schema(event)
        for def_name, definition in schema.pop("$defs", {}).items():
            schemas[def_name] = definition
        schemas[name] = schema
        messages[name] = _message(event, schema)
        channel_id = event.topic.replace(".", "_")
        message_ref = {name: {"$ref": f"#/components/messages/{name}"}}
        channels[channel_id] = {
            "address": event.topic,
            "description": (event.__doc__ or "").strip(),
            "messages": message_ref,
        }
        channels[f"{channel_id}_dlq"] = {
            "address": dlq_topic(event.topic),
            "description": "Messages of "
            + event.topic
            + " that could not be handled, with the error in headers: "
            + "; ".join(f"{k} ({v})" for k, v in DLQ_HEADERS.items()),
            "messages": message_ref,
        }
        producer = producers.get(event.topic)
        if producer is None:
            raise ValueError(f"no registered service publishes {event.topic}")
        operations[f"{producer}_sends_{channel_id}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "summary": f"{producer} publishes {name}",
            "messages": [{"$ref": f"#/channels/{channel_id}/messages/{name}"}],
        }
        for topology in topologies:
            if event not in topology.consumes:
                continue
            group = topology.consumer_group
            operations[f"{topology.service}_receives_{channel_id}"] = {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{channel_id}"},
                "summary": f"{topology.service} consumes {name} at least once (consumer group '{group}')",
                "messages": [{"$ref": f"#/channels/{channel_id}/messages/{name}"}],
                "bindings": {"kafka": {"groupId": {"type": "string", "enum": [group]}}},
            }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "hubpulse events",
            "version": __version__,
            "description": (
                "Every topic hubpulse produces. Values are JSON; keys are UTF-8 strings.\n\n"
                + EVOLUTION_RULES
                + "\n\n"
                + DELIVERY
            ),
            "license": {"name": "Apache-2.0", "url": "https://www.apache.org/licenses/LICENSE-2.0"},
        },
        "defaultContentType": "application/json",
        "servers": {
            "embedded": {"host": "127.0.0.1:9092", "protocol": "kafka", "description": "hubpulse up"},
            "cluster": {
                "host": "hubpulse-kafka-bootstrap:9093",
                "protocol": "kafka-secure",
                "description": "Strimzi in deploy/k8s: TLS, SCRAM-SHA-512 users with per-service ACLs",
            },
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def render(topologies: tuple[Topology, ...] | None = None) -> str:
    # Refs inside model schemas point at '#/$defs/...'; in AsyncAPI they live under components.
    text = yaml.safe_dump(build_document(topologies), sort_keys=False, allow_unicode=True, width=110)
    return text.replace("#/$defs/", "#/components/schemas/")


if __name__ == "__main__":
    sys.stdout.write(render())
