"""`hubpulse models list|promote|rollback` against the real S3 stand-in (moto)."""

from __future__ import annotations

import uuid

from typer.testing import CliRunner

from hubpulse.cli import app
from hubpulse_common.s3 import aws_client, ensure_bucket
from hubpulse_common.settings import CommonSettings, load_settings
from hubpulse_scorer.model.artifact import TrainedModel
from hubpulse_scorer.registry import ModelRegistry


def test_models_commands(service_env, monkeypatch, challenger: TrainedModel) -> None:
    bucket = f"t-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("HUBPULSE_S3_BUCKET", bucket)
    settings = load_settings(CommonSettings)
    client = aws_client("s3", settings)
    ensure_bucket(client, bucket)
    registry = ModelRegistry(client, bucket)
    first = registry.register(challenger)
    runner = CliRunner()

    assert runner.invoke(app, ["models", "rollback"]).exit_code != 0  # nothing to roll back to
    result = runner.invoke(app, ["models", "promote", first.version])
    assert result.exit_code == 0, result.output
    listed = runner.invoke(app, ["models", "list"], terminal_width=300)
    assert listed.exit_code == 0, listed.output
    assert first.version in listed.output
    assert registry.current() is not None
    assert registry.current().version == first.version
    missing = runner.invoke(app, ["models", "promote", "no-such-version"])
    assert missing.exit_code != 0
