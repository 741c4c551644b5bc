"""Auth, metrics and the real gateway app on free ports against the session's stores, with a local SMTP server:
what the watch tests through the gateway and the Python client's tests run against."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from auth.conftest import PASSWORD, serving
from conftest import Store, fresh_database

from hubpulse_auth.app import create_app as create_auth_app
from hubpulse_auth.settings import AuthSettings
from hubpulse_gateway.app import create_app as create_gateway_app
from hubpulse_gateway.settings import GatewaySettings
from hubpulse_metrics.app import create_app as create_metrics_app
from hubpulse_metrics.settings import MetricsSettings
from metrics.watch_support import SmtpServer


@dataclass
class WatchStack:
    gateway: str
    kafka: str
    smtp: SmtpServer
    mongo: str
    database: str  # the metrics service's

    async def sign_in(self, email: str) -> dict[str, str]:
        """A new account's bearer header (signed up, then logged in through the gateway)."""
        async with httpx.AsyncClient(base_url=self.gateway, timeout=30) as client:
            creds = {"email": email, "password": PASSWORD}
            (await client.post("/v1/auth/signup", json=creds)).raise_for_status()
            login = (await client.post("/v1/auth/login", json=creds)).json()
        return {"authorization": f"Bearer {login['access_token']}"}


@pytest.fixture(scope="module")
async def watch_stack(postgres: Store, module_kafka: Store, mongo: Store, s3: Store) -> AsyncIterator[WatchStack]:
    smtp = SmtpServer()
    common = {
        "kafka_bootstrap": module_kafka.url,
        "mongo_url": mongo.url,
        "s3_endpoint": s3.url,
        "environment": "test",
    }
    try:
        auth_db = await fresh_database(postgres, f"watch_auth_{uuid.uuid4().hex[:6]}")
        async with serving(create_auth_app(AuthSettings(database_url=auth_db, environment="test"))) as auth_url:
            metrics = MetricsSettings(
                **common,
                auth_url=auth_url,
                mongo_database=f"watch_{uuid.uuid4().hex[:8]}",
                consumer_group=f"metrics-{uuid.uuid4().hex[:8]}",
                smtp_host="127.0.0.1",
                smtp_port=smtp.port,
                watch_webhook_allow_loopback=True,
                watch_webhook_backoff_s=0.05,
                public_url="https://hubpulse.example.com",
            )
            async with serving(create_metrics_app(metrics)) as metrics_url:
                gateway_db = await fresh_database(postgres, f"watch_gateway_{uuid.uuid4().hex[:6]}")
                gateway = GatewaySettings(
                    **common,
                    database_url=gateway_db,
                    auth_url=auth_url,
                    metrics_url=metrics_url,
                    upstream_timeout_s=30,
                    api_rate_limit="100000/minute",
                    auth_ip_rate_limit="100000/minute",
                )
                async with serving(create_gateway_app(gateway)) as gateway_url:
                    yield WatchStack(gateway_url, module_kafka.url, smtp, mongo.url, metrics.mongo_database)
    finally:
        smtp.close()
