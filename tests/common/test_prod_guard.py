"""HUBPULSE_ENVIRONMENT=prod refuses to start with a development secret (security audit L3), in one line."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from hubpulse_auth.settings import AuthSettings
from hubpulse_common.errors import ConfigError
from hubpulse_common.settings import load_settings
from hubpulse_deployer.settings import DeployerSettings
from hubpulse_metrics.settings import MetricsSettings

REAL = {"s3_access_key_id": "AKIAREAL", "s3_secret_access_key": "a-real-s3-secret"}


def test_prod_names_each_development_secret() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(AuthSettings, environment="prod", **REAL)
    assert "HUBPULSE_SIGNING_KEY_SECRET" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        load_settings(DeployerSettings, environment="prod")
    assert "HUBPULSE_S3_SECRET_ACCESS_KEY" in str(caught.value)
    assert load_settings(DeployerSettings, environment="prod", **REAL)
    assert load_settings(AuthSettings, environment="prod", signing_key_secret="s3cr3t-" * 6, **REAL)
    assert load_settings(AuthSettings, environment="dev").signing_key_secret  # development keeps its defaults


def test_a_prod_service_with_a_default_secret_stops_with_one_line() -> None:
    env = {
        **os.environ,
        "HUBPULSE_ENVIRONMENT": "prod",
        "HUBPULSE_S3_ACCESS_KEY_ID": "AKIAREAL",
        "HUBPULSE_S3_SECRET_ACCESS_KEY": "a-real-s3-secret",
    }
    env.pop("HUBPULSE_SIGNING_KEY_SECRET", None)
    done = subprocess.run([sys.executable, "-m", "hubpulse_auth"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "HUBPULSE_SIGNING_KEY_SECRET" in lines[0]
    assert "Traceback" not in done.stderr


def test_prod_refuses_a_public_address_left_on_the_placeholder_host() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(
            AuthSettings,
            environment="prod",
            signing_key_secret="s3cr3t-" * 6,
            public_url="https://hubpulse.example.com",
            hf_redirect_uri="https://hubpulse.example.com/v1/auth/hf/callback",
            **REAL,
        )
    assert "HUBPULSE_PUBLIC_URL, HUBPULSE_HF_REDIRECT_URI still points at a placeholder host" in str(caught.value)
    real = load_settings(
        AuthSettings,
        environment="prod",
        signing_key_secret="s3cr3t-" * 6,
        public_url="https://hubpulse.acme.io",
        hf_redirect_uri="https://hubpulse.acme.io/v1/auth/hf/callback",
        **REAL,
    )
    assert real.public_url == "https://hubpulse.acme.io"
    assert load_settings(AuthSettings, environment="dev", public_url="https://hubpulse.example.com")


def test_prod_metrics_wants_the_unsubscribe_links_key_set_not_generated() -> None:
    """A key generated per process signs links the other replicas (and the next rollout) refuse."""
    with pytest.raises(ConfigError) as caught:
        load_settings(MetricsSettings, environment="prod", **REAL)
    assert str(caught.value).startswith("bad setting HUBPULSE_WATCH_LINK_SECRET must be set")
    assert load_settings(MetricsSettings, environment="prod", watch_link_secret="l1nk-" * 8, **REAL)
    one, two = load_settings(MetricsSettings), load_settings(MetricsSettings)  # development: one per process
    assert one.watch_link_secret.get_secret_value() != two.watch_link_secret.get_secret_value()
