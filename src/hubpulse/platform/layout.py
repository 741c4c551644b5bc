"""What `hubpulse up` runs and where: ports, URLs and the environment each process gets.

Everything listens on loopback. The gateway takes `--port`; the others sit at fixed offsets from it so
that several platforms can run side by side (`--port 9000` moves them all).
"""

from __future__ import annotations

import os
import random
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from hubpulse.platform.stores import ProcessSpec, kafka_spec, mongo_spec, port_open, postgres_spec, s3_spec

# name -> (python package, port offset from the gateway's port)
SERVICES: dict[str, tuple[str, int]] = {
    "gateway": ("hubpulse_gateway", 0),
    "auth": ("hubpulse_auth", 1),
    "ingestor": ("hubpulse_ingestor", 2),
    "features": ("hubpulse_features", 3),
    "scorer": ("hubpulse_scorer", 4),
    "deployer": ("hubpulse_deployer", 5),
    "metrics": ("hubpulse_metrics", 6),
}
HUB_OFFSET = 10
STORE_OFFSETS = {"postgres": 32, "mongo": 17, "s3": 90, "kafka": 92}

# Setting one of these replaces the embedded store with external infrastructure.
EXTERNAL = {
    "kafka": "HUBPULSE_KAFKA_BOOTSTRAP",
    "postgres": "HUBPULSE_DATABASE_URL",
    "mongo": "HUBPULSE_MONGO_URL",
    "s3": "HUBPULSE_S3_ENDPOINT",
}
DEFAULT_HF_ENDPOINT = "https://huggingface.co"


def free_base_port(attempts: int = 50) -> int:
    """A `--port` whose whole range (services, replay Hub, stores) is free now, e.g. for a test's platform."""
    offsets = [*(offset for _, offset in SERVICES.values()), HUB_OFFSET, *STORE_OFFSETS.values()]
    for _ in range(attempts):
        # below Linux's ephemeral range (32768-60999), where other processes' connections take ports at any time
        base = random.randrange(20000, 32600, 100)
        if not any(port_open(base + offset) for offset in offsets):
            return base
    raise RuntimeError("no free port range")


@dataclass(frozen=True)
class PlatformConfig:
    data_dir: Path
    port: int = 8000
    demo: bool = False
    models: int = 2000
    days: int = 30
    seed: int = 0
    day_seconds: float = 60.0  # the demo clock: a new Hub day this often once the history is loaded

    @property
    def state_file(self) -> Path:
        return self.data_dir / "state.json"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    def hub_url(self) -> str:
        if self.demo:
            return f"http://127.0.0.1:{self.port + HUB_OFFSET}"
        return os.environ.get("HF_ENDPOINT", DEFAULT_HF_ENDPOINT)


def store_specs(config: PlatformConfig, environ: dict[str, str]) -> list[ProcessSpec]:
    """The embedded stores that no `HUBPULSE_*` variable points elsewhere."""
    makers: dict[str, Callable[[int], ProcessSpec]] = {
        "postgres": partial(postgres_spec, config.data_dir),
        "kafka": kafka_spec,
        "mongo": partial(mongo_spec, config.data_dir),
        "s3": partial(s3_spec, config.data_dir),
    }
    return [
        makers[name](config.port + offset) for name, offset in STORE_OFFSETS.items() if not environ.get(EXTERNAL[name])
    ]


def hub_spec(config: PlatformConfig) -> ProcessSpec:
    port = config.port + HUB_OFFSET
    return ProcessSpec(
        name="hub",
        kind="hub",
        port=port,
        url=f"http://127.0.0.1:{port}",
        argv=[
            sys.executable,
            "-m",
            "hubpulse",
            "hub",
            "serve",
            "--synthetic",
            str(config.models),
            "--days",
            str(config.days),
            "--port",
            str(port),
            "--seed",
            str(config.seed),
            "--day-seconds",
            str(config.day_seconds),
        ],
        health_path="/api/models?limit=1",
    )


def service_environment(config: PlatformConfig, stores: list[ProcessSpec], environ: dict[str, str]) -> dict[str, str]:
    """HUBPULSE_* variables every service gets: the embedded stores' URLs unless set externally."""
    env: dict[str, str] = {
        "HF_ENDPOINT": config.hub_url(),
        "HUBPULSE_HUB_URL": config.hub_url(),  # the web app's "On the Hub" links
        "HUBPULSE_DATA_DIR": str(config.data_dir),
        "HUBPULSE_AUTH_URL": f"http://127.0.0.1:{config.port + SERVICES['auth'][1]}",
        "HUBPULSE_DEPLOYER_URL": f"http://127.0.0.1:{config.port + SERVICES['deployer'][1]}",
        "HUBPULSE_METRICS_URL": f"http://127.0.0.1:{config.port + SERVICES['metrics'][1]}",
        "HUBPULSE_SCORER_URL": f"http://127.0.0.1:{config.port + SERVICES['scorer'][1]}",
        "HUBPULSE_PUBLIC_URL": f"http://127.0.0.1:{config.port + SERVICES['gateway'][1]}",
        # one machine: the gateway reaches the deployer's model servers and calls them itself (its data plane)
        "HUBPULSE_MODEL_SERVER_SECRET": secrets.token_hex(16),
    }
    if config.demo:
        # A demo day passes as soon as its cycle is done (hubpulse.platform.demo advances the Hub).
        env["HUBPULSE_INGEST_INTERVAL_S"] = "5"
        # the replay Hub's Space routes want a bearer token, as huggingface.co's do; any one serves there
        env["HUBPULSE_HF_TOKEN"] = "hf_hubpulse_demo"  # noqa: S105 (a placeholder, not a credential)
        # Watches may post webhooks to a receiver on this machine (refused outside the demo).
        env["HUBPULSE_WATCH_WEBHOOK_ALLOW_LOOPBACK"] = "true"
    by_name = {spec.name: spec for spec in stores}
    for name, variable in EXTERNAL.items():
        if name in by_name:
            env[variable] = by_name[name].url
    if "s3" in by_name:
        env.setdefault("HUBPULSE_S3_ACCESS_KEY_ID", "hubpulse")
        # moto serves Lambda and IAM too; the deployer has endpoints and keys of its own for them
        env.update(
            {
                "HUBPULSE_LAMBDA_ENDPOINT": by_name["s3"].url,
                "HUBPULSE_IAM_ENDPOINT": by_name["s3"].url,
                "HUBPULSE_AWS_ACCESS_KEY_ID": "hubpulse",
                "HUBPULSE_AWS_SECRET_ACCESS_KEY": "hubpulse-secret",
            }
        )
    return {**env, **{k: v for k, v in environ.items() if k.startswith("HUBPULSE_") or k == "HF_ENDPOINT"}}


def service_specs(config: PlatformConfig, env: dict[str, str]) -> list[ProcessSpec]:
    specs = []
    for name, (package, offset) in SERVICES.items():
        port = config.port + offset
        specs.append(
            ProcessSpec(
                name=name,
                kind="service",
                port=port,
                url=f"http://127.0.0.1:{port}",
                argv=[sys.executable, "-m", package],
                env={**env, "HUBPULSE_PORT": str(port)},
                health_path="/healthz",
                ready_path="/readyz",
            )
        )
    return specs
