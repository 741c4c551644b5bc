"""What `hubpulse up` tells the deployer about the embedded stand-ins."""

from __future__ import annotations

from pathlib import Path

from hubpulse.platform.layout import PlatformConfig, service_environment, store_specs
from hubpulse_deployer.settings import DeployerSettings


def test_embedded_moto_serves_lambda_and_iam_with_the_deployers_own_keys(tmp_path: Path) -> None:
    config = PlatformConfig(data_dir=tmp_path, port=8800, demo=True)
    stores = store_specs(config, {})
    env = service_environment(config, stores, {})
    moto = next(s.url for s in stores if s.name == "s3")
    assert env["HUBPULSE_LAMBDA_ENDPOINT"] == env["HUBPULSE_IAM_ENDPOINT"] == moto
    settings = DeployerSettings.model_validate(
        {k.removeprefix("HUBPULSE_").lower(): v for k, v in env.items() if k.startswith("HUBPULSE_")}
    )
    assert settings.aws_access_key_id is not None
    # the replay Hub's Space routes want a bearer token; a real Hub's token is never invented
    assert isinstance(settings.hub_token(), str)
    assert "HUBPULSE_HF_TOKEN" not in service_environment(PlatformConfig(data_dir=tmp_path), stores, {})
