"""Settings read from `HUBPULSE_*` environment variables; one settings class per service extends these.

Secrets are `SecretStr` so they never show up in logs or reprs.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from hubpulse_common.errors import ConfigError

ENV_PREFIX = "HUBPULSE_"


class CommonSettings(BaseSettings):
    """What every process needs: identity, logging, and where the backing stores are."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    # names the logs, the Kafka client and the service's Alembic version table (alembic_version_<name>)
    service_name: str = "hubpulse"
    environment: Literal["dev", "test", "prod"] = "dev"  # stamped on every log line
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # json: one object per line (collectors); console: human-readable
    log_format: Literal["json", "console"] = "json"

    # host:port of the Kafka brokers (comma-separated)
    kafka_bootstrap: str = "127.0.0.1:9092"
    # partitions of the topics a service creates when they are missing (HUBPULSE_KAFKA_CREATE_TOPICS)
    kafka_partitions: int = 4
    # Create missing topics at start (embedded, compose); off where an operator owns them (Strimzi KafkaTopics).
    kafka_create_topics: bool = True
    # postgresql://user:password@host:5432/database (PostgreSQL 18 with pg_trgm)
    database_url: SecretStr = SecretStr("postgresql://postgres@127.0.0.1:5432/hubpulse")
    # Apply this service's migrations at start (embedded platform, tests). Off where `hubpulse migrate` runs as a
    # step before the rollout (compose's migrate service, the Kubernetes Job): the service then only checks that
    # the schema is current and refuses to start, naming the command, when it is not.
    migrate_on_start: bool = True
    # With HUBPULSE_MIGRATE_ON_START off: how long start-up waits for the migration step to bring the schema up
    # to date before it gives up (0: fail at once). Kubernetes starts the pods while the migrate Job runs.
    schema_wait_s: float = 0.0
    # How long a migration's DDL may wait for a table lock before it gives up (and the step is retried).
    migration_lock_timeout_s: float = 5.0
    # How long one migration statement may run before PostgreSQL cancels it (0: no limit); keep it below the
    # rollout's wait for the migration step (Kubernetes README: `kubectl wait ... --timeout=30m`).
    migration_statement_timeout_s: float = Field(default=900.0, ge=0)
    # mongodb://... (deployer, metrics; MongoDB 5.0 or later: time-series collections)
    mongo_url: SecretStr = SecretStr("mongodb://127.0.0.1:27017")
    mongo_database: str = "hubpulse"
    # any S3 API (AWS, MinIO, Ceph, ...); unset: AWS's endpoint for HUBPULSE_S3_REGION
    s3_endpoint: str | None = None
    s3_region: str = "us-east-1"
    # keys with read/write on HUBPULSE_S3_BUCKET (the scorer's model registry, the deployer's artifacts)
    s3_access_key_id: SecretStr = SecretStr("hubpulse")
    s3_secret_access_key: SecretStr = SecretStr("hubpulse-secret")
    # must exist, or the keys must be allowed to create it
    s3_bucket: str = "hubpulse-artifacts"
    # A directory of files, one per setting, each named like its variable (HUBPULSE_DATABASE_URL, ...) and
    # holding its value: Kubernetes mounts the Secrets there (deploy/k8s), so credentials stay out of the
    # process environment. A variable set in the environment wins over its file. Read from the environment only.
    secrets_dir: str | None = None


class KafkaSecuritySettings(BaseSettings):
    """How the Kafka clients authenticate: plaintext by default (embedded broker, compose); SASL_SSL with
    SCRAM-SHA-512 against Strimzi's `tls` listener (deploy/k8s: one KafkaUser per service)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX + "KAFKA_", extra="ignore", frozen=True)

    # SASL_SSL against Strimzi's tls listener (deploy/k8s); PLAINTEXT for the embedded broker and compose
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    # with SASL_*: Strimzi's KafkaUsers authenticate with SCRAM-SHA-512
    sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = "SCRAM-SHA-512"
    # the service's KafkaUser (deploy/k8s/base/kafka/users.yaml); required with SASL_*
    sasl_username: str | None = None
    # its password (Strimzi writes it into the Secret named after the KafkaUser, key `password`)
    sasl_password: SecretStr | None = None
    # PEM bundle of the CA that signed the brokers' certificates (Strimzi: the <cluster>-cluster-ca-cert Secret)
    ssl_cafile: str | None = None


def _service_default(cls: type[BaseSettings], name: str, value: object) -> None:
    """Declare field `name` again on `cls` (before pydantic collects its fields) with the default `value`."""
    declared = next(
        base.model_fields[name]
        for base in cls.__mro__[1:]
        if issubclass(base, BaseSettings) and name in base.model_fields
    )
    cls.__annotations__[name] = declared.annotation
    setattr(cls, name, value)


class ServiceSettings(CommonSettings):
    """An HTTP service: where it listens and how long it may take to start and stop.

    A service's class names the service and its port once, as class keywords:
    `class AuthSettings(ServiceSettings, service="auth", port=8001)` gives `service_name` and `port` (and, for a
    consumer, `consumer_group`) those defaults."""

    def __init_subclass__(cls, *, service: str | None = None, port: int | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if service is not None:
            _service_default(cls, "service_name", service)
        if port is not None:
            _service_default(cls, "port", port)

    # listen address (0.0.0.0 in a container)
    host: str = "127.0.0.1"
    # listen port (each service has its own default)
    port: int = 8080
    # on SIGTERM: time to finish the batch in hand and commit before exiting
    shutdown_timeout_s: float = 15.0
    # how long a readiness probe waits for a store or the broker
    dependency_timeout_s: float = 5.0
    # Largest request body read (bytes); a bigger one is answered 413 before it is read (http.py BodyLimit).
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)
    # Peers (IPs or CIDRs, JSON list) whose X-Forwarded-For is believed, e.g. the ingress pods' network.
    # Empty: the TCP peer is the client.
    trusted_proxies: list[str] = []

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        """Every entry an IP or CIDR: a placeholder left in a deployment refuses to start, saying what to set."""
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(
                    f"{entry!r} is not an IP address or CIDR: set the address range of the proxies in front of "
                    "the gateway (your Ingress controller's or Gateway's pods, or the load balancer's subnet)"
                ) from None
        return value

    # Access tokens: every internal service verifies the caller's JWT against the auth service's JWKS
    # (identity.py); issuer and audience must match the auth service's.
    auth_url: str = "http://127.0.0.1:8001"
    jwt_issuer: str = "hubpulse-auth"
    jwt_audience: str = "hubpulse-api"
    jwks_max_age_s: float = 300.0
    jwks_min_refresh_s: float = 1.0
    # Where people reach the web app (the gateway), for links in e-mails and webhooks.
    public_url: str = "http://127.0.0.1:8000"


class ConsumerSettings(ServiceSettings):
    """A service that consumes topics (hubpulse_common.kafka.BatchConsumer.of): its group and batch size. The
    group is named after the service (`service=` of the class)."""

    def __init_subclass__(cls, *, service: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(service=service, **kwargs)
        if service is not None:
            _service_default(cls, "consumer_group", service)

    # the Kafka consumer group (each service its own: every service sees every event)
    consumer_group: str = "hubpulse"
    # the most events a batch hands the handler
    batch_size: int = 2000
    # how long the group waits on a silent member (a killed process) before giving its partitions to the others;
    # Kafka refuses less than its group.min.session.timeout.ms (6 s by default)
    consumer_session_timeout_ms: int = Field(10_000, ge=6_000, le=1_800_000)


S = TypeVar("S", bound=BaseSettings)


def _variable(cls: type[BaseSettings], name: str) -> str:
    alias = cls.model_fields[name].validation_alias
    if isinstance(alias, AliasChoices) and isinstance(alias.choices[0], str):
        return alias.choices[0]
    return f"{cls.model_config.get('env_prefix', '')}{name.upper()}"


def dev_defaults(settings: BaseSettings) -> list[str]:
    """The variables of secrets still at their built-in development value (a URL is an address, not a secret)."""
    cls = type(settings)
    return [
        _variable(cls, name)
        for name, info in cls.model_fields.items()
        if isinstance(info.default, SecretStr)
        and info.default.get_secret_value()
        and not name.endswith("_url")
        and getattr(settings, name) == info.default
    ]


# Host names reserved for documentation (RFC 2606, RFC 6761): the deploy files' placeholders for your own.
_PLACEHOLDER_HOST = re.compile(r"(^|\.)(example\.(com|net|org)|[^.]+\.(example|invalid))$", re.IGNORECASE)


def placeholder_addresses(settings: BaseSettings) -> list[str]:
    """The variables of addresses (`*_url`, `*_uri`, not secrets) still on a documentation host such as
    hubpulse.example.com: links in e-mails and OAuth redirects would point nowhere."""
    cls = type(settings)
    return [
        _variable(cls, name)
        for name in cls.model_fields
        if name.endswith(("_url", "_uri"))
        and isinstance(value := getattr(settings, name), str)
        and _PLACEHOLDER_HOST.search(urlsplit(value).hostname or "")
    ]


def load_settings(cls: type[S], **overrides: Any) -> S:
    """Build settings or raise `ConfigError` naming the offending environment variable.

    With HUBPULSE_ENVIRONMENT=prod, a secret left at its development default is such an error. Settings not in
    the environment are read from the files of HUBPULSE_SECRETS_DIR, when it is set."""
    secrets_dir = os.environ.get(ENV_PREFIX + "SECRETS_DIR") or None
    if secrets_dir is not None and not Path(secrets_dir).is_dir():
        raise ConfigError(f"HUBPULSE_SECRETS_DIR={secrets_dir}: no such directory (where the secret files are mounted)")
    try:
        settings = cls(_secrets_dir=secrets_dir, **overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"])
            prefix = cls.model_config.get("env_prefix", "")
            if not field:  # a check across settings (a model validator): its message names them
                problems.append(str(error["msg"]).removeprefix("Value error, "))
                continue
            problems.append(f"{prefix}{field.upper()}: {error['msg']} (got {error.get('input')!r})")
        raise ConfigError("bad setting " + "; ".join(problems)) from None
    if getattr(settings, "environment", None) == "prod" and (defaults := dev_defaults(settings)):
        raise ConfigError(
            f"HUBPULSE_ENVIRONMENT=prod but {', '.join(defaults)} still has the development default; set a real secret"
        )
    if getattr(settings, "environment", None) == "prod" and (addresses := placeholder_addresses(settings)):
        raise ConfigError(
            f"HUBPULSE_ENVIRONMENT=prod but {', '.join(addresses)} still points at a placeholder host "
            "(example.com); set the address people reach hubpulse at"
        )
    return settings
