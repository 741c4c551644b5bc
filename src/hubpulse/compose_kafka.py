"""docker-compose.yml's Kafka topics, users and ACLs, generated from the services' declared topologies:
`python -m hubpulse.compose_kafka` (`make compose-kafka`) rewrites deploy/compose/kafka-setup.sh below its hand-written
shell helpers.

The compose one-shot `kafka-setup` runs the script as the broker's super user once the broker is healthy:
it creates every topic and its dead letters, one SCRAM-SHA-512 user per service that talks to Kafka
(`kafka-<service>`, the names of deploy/k8s/base/kafka/users.yaml) and ACLs that allow exactly what the
service's `topology.py` declares: Write what it publishes, Read what it consumes under its consumer group,
Write that input's `.dlq`, Describe on each. The same `grants` give the Strimzi KafkaUsers' expected ACLs in
tests/deploy, and a test fails when the committed script differs from this output.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from hubpulse_common.errors import UserFacingError
from hubpulse_common.events import ALL_TOPICS, dlq_topic
from hubpulse_common.topology import Topology, registered

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "compose" / "kafka-setup.sh"

# (resource type, name, operation) as kafka-acls and Strimzi's KafkaUser name them
Grant = tuple[str, str, str]

# the gateway's package directory is api-gateway; compose, k8s and its settings call it gateway
_DEPLOYED_NAME = {"api-gateway": "gateway"}


def service_name(topology: Topology) -> str:
    return _DEPLOYED_NAME.get(topology.service, topology.service)


def kafka_user(topology: Topology) -> str:
    return f"kafka-{service_name(topology)}"


def password_variable(topology: Topology) -> str:
    """The .env variable holding the user's password in compose."""
    return f"KAFKA_{service_name(topology).upper()}_PASSWORD"


def grants(topology: Topology) -> set[Grant]:
    """What the service's clients need and nothing more."""
    out: set[Grant] = set()
    for event in topology.publishes:
        out |= {("topic", event.topic, "Write"), ("topic", event.topic, "Describe")}
    for event in topology.consumes:
        out |= {("topic", event.topic, "Read"), ("topic", event.topic, "Describe")}
        out |= {("topic", dlq_topic(event.topic), "Write"), ("topic", dlq_topic(event.topic), "Describe")}
        out |= {("group", topology.consumer_group, "Read"), ("group", topology.consumer_group, "Describe")}
    return out


# compose's Prometheus exporter (kafka-exporter) reads offsets and consumer-group lag: Describe on all of them
EXPORTER_USER, EXPORTER_PASSWORD = "kafka-exporter", "KAFKA_EXPORTER_PASSWORD"


def kafka_topologies() -> list[Topology]:
    """The registered services that use Kafka at all."""
    return [topology for topology in registered() if grants(topology)]


# The script's shell helpers (the admin login, `topic`, `user`, `allow`) are written by hand at its top; from this
# line on it is generated.
_GENERATED_FROM = "# topics and their dead letters (hubpulse_common.events.ALL_TOPICS)"


def _helpers() -> str:
    """The hand-written top of the committed script, up to the generated part."""
    helpers, found, _ = SCRIPT.read_text().partition(_GENERATED_FROM)
    if not found:
        raise UserFacingError(f"{SCRIPT.relative_to(ROOT)} has no line {_GENERATED_FROM!r} to generate from")
    return helpers


def render() -> str:
    lines = [_helpers() + _GENERATED_FROM]
    lines += [f"topic {name}" for topic in ALL_TOPICS for name in (topic, dlq_topic(topic))]
    for topology in kafka_topologies():
        user = kafka_user(topology)
        lines += ["", f"# {service_name(topology)} ({topology.service}/topology.py)"]
        lines.append(f'user {user} "${{{password_variable(topology)}:?}}"')
        by_resource: dict[tuple[str, str], list[str]] = {}
        for kind, name, operation in sorted(grants(topology)):
            by_resource.setdefault((kind, name), []).append(operation)
        for (kind, name), operations in by_resource.items():
            ops = " ".join(f"--operation {operation}" for operation in operations)
            lines.append(f"allow {user} {ops} --{kind} {shlex.quote(name)}")
    lines += ["", "# monitoring: the Prometheus exporter reads every topic's offsets and every group's lag"]
    lines.append(f'user {EXPORTER_USER} "${{{EXPORTER_PASSWORD}:?}}"')
    lines.append(f"allow {EXPORTER_USER} --operation Describe --topic '*' --group '*'")
    lines += ["", 'echo "kafka-setup: topics, users and ACLs in place"']
    return "\n".join(lines) + "\n"


def main() -> None:
    # written here, not through a shell redirect: the redirect would empty the file before its helpers are read
    SCRIPT.write_text(render())
    print(f"wrote {SCRIPT.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
