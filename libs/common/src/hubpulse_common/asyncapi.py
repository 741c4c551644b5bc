"""Build the AsyncAPI 3.0 document of every topic from the event models (`python -m hubpulse_common.asyncapi`).

The committed docs/asyncapi.yaml is this module's output; a test fails when they drift apart.
"""

from __future__ import annotations

import sys
from typing import Any

import yaml

from hubpulse_common.events import ALL_EVENTS, Event, dlq_topic, event_schema

# topic -> (service that publishes, services that consume). Documentation only; the code is the truth.
FLOWS: dict[str, tuple[str, tuple[str, ...]]] = {
    "hub.snapshots.v1": ("ingestor", ("features",)),
    "hub.features.v1": ("features", ("scorer",)),
    "hub.scores.v1": ("scorer", ()),  # the gateway reads the catalog table the scorer writes, not the topic
    "deploy.events.v1": ("deployer", ("metrics",)),
    "inference.events.v1": ("api-gateway", ("metrics",)),
    "alerts.v1": ("metrics", ()),
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


def _message_name(event: type[Event]) -> str:
    return event.__name__


def _key_description(event: type[Event]) -> str:
    return f"the event's `{event.key_field}`: one {event.key_field.replace('_id', '')}'s events stay ordered"


def build_document() -> dict[str, Any]:
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for event in ALL_EVENTS:
        name = _message_name(event)
        schema = event_schema(event)
        for def_name, definition in schema.pop("$defs", {}).items():
            schemas[def_name] = definition
        schemas[name] = schema
        messages[name] = {
            "name": name,
            "title": name,
            "summary": (event.__doc__ or "").strip().splitlines()[0],
            "contentType": "application/json",
            "payload": {"$ref": f"#/components/schemas/{name}"},
            "bindings": {"kafka": {"key": {"type": "string", "description": _key_description(event)}}},
            "headers": {
                "type": "object",
                "properties": {"x-request-id": {"type": "string", "description": "trace id of the causing request"}},
            },
        }
        producer, consumers = FLOWS[event.topic]
        channel_id = event.topic.replace(".", "_")
        channels[channel_id] = {
            "address": event.topic,
            "description": (event.__doc__ or "").strip(),
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
        }
        channels[f"{channel_id}_dlq"] = {
            "address": dlq_topic(event.topic),
            "description": "Messages of "
            + event.topic
            + " that could not be handled, with the error in headers: "
            + "; ".join(f"{k} ({v})" for k, v in DLQ_HEADERS.items()),
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
        }
        operations[f"{producer}_sends_{channel_id}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "summary": f"{producer} publishes {name}",
        }
        for consumer in consumers:
            operations[f"{consumer}_receives_{channel_id}"] = {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{channel_id}"},
                "summary": f"{consumer} consumes {name} at least once (consumer group '{consumer}')",
            }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "hubpulse events",
            "version": "1.0.0",
            "description": (
                "Every topic hubpulse produces. Values are JSON with a `schema_version`; the topic name carries "
                "the major version. Consumers ignore unknown fields. Delivery is at least once: deduplicate on "
                "each event's natural key (named in its description)."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "embedded": {"host": "127.0.0.1:9092", "protocol": "kafka", "description": "hubpulse up"},
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def render() -> str:
    # Refs inside model schemas point at '#/$defs/...'; in AsyncAPI they live under components.
    text = yaml.safe_dump(build_document(), sort_keys=False, allow_unicode=True, width=110)
    return text.replace("#/$defs/", "#/components/schemas/")


if __name__ == "__main__":
    sys.stdout.write(render())
