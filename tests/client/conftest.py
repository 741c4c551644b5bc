"""The platform the client is tested against: replay Hub (demo models), auth, deployer, metrics and the real
gateway over a seeded catalog, on free ports against the session's PostgreSQL, Kafka, MongoDB and S3."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from auth.conftest import PASSWORD, serving
from conftest import Store, fresh_database
from deployer.conftest import DEMO_CACHE

from hubpulse.bench.catalog_seed import seed_catalog
from hubpulse.hub import create_app as create_hub_app
from hubpulse.hub.demo_models import DemoRepos
from hubpulse_auth.app import create_app as create_auth_app
from hubpulse_auth.settings import AuthSettings
from hubpulse_common.synthetic import SyntheticHub
from hubpulse_deployer.app import create_app as create_deployer_app
from hubpulse_deployer.settings import DeployerSettings
from hubpulse_gateway.app import create_app as create_gateway_app
from hubpulse_gateway.settings import GatewaySettings
from hubpulse_metrics.app import create_app as create_metrics_app
from hubpulse_metrics.settings import MetricsSettings

CATALOG_MODELS = 120


@dataclass
class Platform:
    gateway: str
    token: str
    catalog_models: int


@pytest.fixture(scope="module")
async def platform(
    postgres: Store, kafka: Store, mongo: Store, s3: Store, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Platform]:
    tag = uuid.uuid4().hex[:6]
    common = {"kafka_bootstrap": kafka.url, "mongo_url": mongo.url, "s3_endpoint": s3.url, "environment": "test"}
    hub = create_hub_app(SyntheticHub(20, 3, seed=3))
    hub.state.demo_repos = DemoRepos(DEMO_CACHE)
    hub.state.space_build_seconds = 0.5
    auth_db = await fresh_database(postgres, f"client_auth_{tag}")
    gateway_db = await fresh_database(postgres, f"client_gateway_{tag}")
    seeded = await seed_catalog(gateway_db, CATALOG_MODELS, days=3, history_days=3)
    async with contextlib.AsyncExitStack() as stack:
        hub_url = await stack.enter_async_context(serving(hub))
        auth = AuthSettings(database_url=auth_db, environment="test")
        auth_url = await stack.enter_async_context(serving(create_auth_app(auth)))
        deployer = DeployerSettings(
            **common,
            hf_endpoint=hub_url,
            auth_url=auth_url,
            mongo_database=f"client_deploy_{tag}",
            data_dir=tmp_path_factory.mktemp("deployer"),
            provision_timeout_s=90,
            resource_poll_s=0.5,
        )
        deployer_url = await stack.enter_async_context(serving(create_deployer_app(deployer)))
        metrics = MetricsSettings(
            **common,
            auth_url=auth_url,
            mongo_database=f"client_metrics_{tag}",
            consumer_group=f"metrics-{tag}",
            watch_webhook_allow_loopback=True,
        )
        metrics_url = await stack.enter_async_context(serving(create_metrics_app(metrics)))
        gateway = GatewaySettings(
            **common,
            database_url=gateway_db,
            auth_url=auth_url,
            deployer_url=deployer_url,
            metrics_url=metrics_url,
            upstream_timeout_s=30,
            api_rate_limit="100000/minute",
            auth_ip_rate_limit="100000/minute",
        )
        gateway_url = await stack.enter_async_context(serving(create_gateway_app(gateway)))
        async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as client:
            creds = {"email": f"client-{tag}@example.com", "password": PASSWORD}
            (await client.post("/v1/auth/signup", json=creds)).raise_for_status()
            token = (await client.post("/v1/auth/login", json=creds)).json()["access_token"]
        yield Platform(gateway_url, token, seeded.models)
