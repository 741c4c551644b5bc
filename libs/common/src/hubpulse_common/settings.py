"""Settings read from `HUBPULSE_*` environment variables; one settings class per service extends these.

Secrets are `SecretStr` so they never show up in logs or reprs.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from hubpulse_common.errors import ConfigError

ENV_PREFIX = "HUBPULSE_"


class CommonSettings(BaseSettings):
    """What every process needs: identity, logging, and where the backing stores are."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    service_name: str = "hubpulse"
    environment: Literal["dev", "test", "prod"] = "dev"  # stamped on every log line
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = "json"

    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_partitions: int = 4
    # Create missing topics at start (embedded, compose); off where an operator owns them (Strimzi KafkaTopics).
    kafka_create_topics: bool = True
    database_url: SecretStr = SecretStr("postgresql://postgres@127.0.0.1:5432/hubpulse")
    mongo_url: SecretStr = SecretStr("mongodb://127.0.0.1:27017")
    mongo_database: str = "hubpulse"
    s3_endpoint: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key_id: SecretStr = SecretStr("hubpulse")
    s3_secret_access_key: SecretStr = SecretStr("hubpulse-secret")
    s3_bucket: str = "hubpulse-artifacts"


class KafkaSecuritySettings(BaseSettings):
    """How the Kafka clients authenticate: plaintext by default (embedded broker, compose); SASL_SSL with
    SCRAM-SHA-512 against Strimzi's `tls` listener (deploy/k8s: one KafkaUser per service)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX + "KAFKA_", extra="ignore", frozen=True)

    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = "SCRAM-SHA-512"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    # PEM bundle of the CA that signed the brokers' certificates (Strimzi: the <cluster>-cluster-ca-cert Secret)
    ssl_cafile: str | None = None


class ServiceSettings(CommonSettings):
    """An HTTP service: where it listens and how long it may take to start and stop."""

    host: str = "127.0.0.1"
    port: int = 8080
    shutdown_timeout_s: float = 15.0
    dependency_timeout_s: float = 5.0


S = TypeVar("S", bound=BaseSettings)


def load_settings(cls: type[S], **overrides: Any) -> S:
    """Build settings or raise `ConfigError` naming the offending environment variable."""
    try:
        return cls(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"])
            prefix = cls.model_config.get("env_prefix", "")
            problems.append(f"{prefix}{field.upper()}: {error['msg']} (got {error.get('input')!r})")
        raise ConfigError("bad setting " + "; ".join(problems)) from None
