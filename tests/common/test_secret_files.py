"""Settings read from mounted secret files (HUBPULSE_SECRETS_DIR), as deploy/k8s mounts its Secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from hubpulse_common.errors import ConfigError
from hubpulse_common.settings import CommonSettings, KafkaSecuritySettings, load_settings


def test_secrets_come_from_files_named_like_their_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "HUBPULSE_DATABASE_URL").write_text("postgresql://app:from-file@db:5432/hubpulse\n")
    (tmp_path / "HUBPULSE_KAFKA_SASL_PASSWORD").write_text("kafka-from-file")
    (tmp_path / "HUBPULSE_S3_SECRET_ACCESS_KEY").write_text("s3-from-file")
    monkeypatch.setenv("HUBPULSE_SECRETS_DIR", str(tmp_path))
    monkeypatch.setenv("HUBPULSE_S3_SECRET_ACCESS_KEY", "s3-from-env")  # the environment wins over a file
    settings = load_settings(CommonSettings)
    assert settings.database_url.get_secret_value() == "postgresql://app:from-file@db:5432/hubpulse"
    assert settings.s3_secret_access_key.get_secret_value() == "s3-from-env"
    kafka = load_settings(KafkaSecuritySettings)
    assert kafka.sasl_password is not None
    assert kafka.sasl_password.get_secret_value() == "kafka-from-file"
    # a secret neither in the environment nor in a file is still refused in prod
    with pytest.raises(ConfigError, match="HUBPULSE_S3_ACCESS_KEY_ID still has the development default"):
        load_settings(CommonSettings, environment="prod")


def test_a_missing_secrets_directory_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUBPULSE_SECRETS_DIR", str(tmp_path / "absent"))
    with pytest.raises(ConfigError, match=r"HUBPULSE_SECRETS_DIR=.*absent: no such directory"):
        load_settings(CommonSettings)
