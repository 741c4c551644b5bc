"""Kafka client security settings (HUBPULSE_KAFKA_SECURITY_PROTOCOL, SASL, CA file): what aiokafka gets."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from pydantic import SecretStr

from hubpulse_common.errors import ConfigError
from hubpulse_common.kafka import security_options
from hubpulse_common.settings import KafkaSecuritySettings

CA = Path(ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt")


def test_plaintext_is_the_default() -> None:
    assert security_options(KafkaSecuritySettings()) == {"security_protocol": "PLAINTEXT"}


async def test_scram_over_tls_reaches_the_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUBPULSE_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("HUBPULSE_KAFKA_SASL_USERNAME", "scorer")
    monkeypatch.setenv("HUBPULSE_KAFKA_SASL_PASSWORD", "pw")
    monkeypatch.setenv("HUBPULSE_KAFKA_SSL_CAFILE", str(CA))
    options = security_options()
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("scorer", "pw")
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    # aiokafka accepts exactly these arguments (a misspelt one raises TypeError here)
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9", **options)
    assert producer.client._security_protocol == "SASL_SSL"


def test_sasl_without_credentials_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="HUBPULSE_KAFKA_SASL_USERNAME"):
        security_options(KafkaSecuritySettings(security_protocol="SASL_PLAINTEXT"))


def test_a_missing_ca_file_is_a_config_error(tmp_path: Path) -> None:
    settings = KafkaSecuritySettings(
        security_protocol="SASL_SSL", sasl_username="u", sasl_password=SecretStr("p"), ssl_cafile=str(tmp_path / "x")
    )
    with pytest.raises(ConfigError, match="HUBPULSE_KAFKA_SSL_CAFILE"):
        security_options(settings)
