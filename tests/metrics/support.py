"""Helpers of the metrics tests: the service as its own OS process, event factories, polling."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import httpx
from issuer import TokenIssuer

from hubpulse.platform.stores import free_port, wait_port
from hubpulse_common.events import DeploymentEvent, DeploymentStatus, InferenceEvent

# The metrics service verifies callers' tokens against this issuer's JWKS (HUBPULSE_AUTH_URL in metrics_env).
ISSUER = TokenIssuer()
TEST_USER, TEST_ORG = "tester", "org-tests"  # whom events belong to unless a test says otherwise
# minted once, when the suite is collected: it must outlive the whole run, not expire after ten minutes of it
ADMIN = ISSUER.headers(TEST_USER, TEST_ORG, "admin", ttl_s=24 * 3600)


class MetricsProcess:
    """`python -m hubpulse_metrics` on a free port with its own consumer group and database; restartable."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.env = {
            **os.environ,
            **env,
            "HUBPULSE_PORT": str(self.port),
            "HUBPULSE_CONSUMER_GROUP": f"metrics-{uuid.uuid4().hex[:8]}",
            "HUBPULSE_MONGO_DATABASE": f"metrics_{uuid.uuid4().hex[:8]}",
        }
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "hubpulse_metrics"], env=self.env, stderr=log)
        assert wait_port(self.port, 60, self.proc), self.log_path.read_text(errors="replace")[-3000:]
        deadline = time.monotonic() + 30
        while httpx.get(f"{self.url}/readyz").status_code != 200:
            assert time.monotonic() < deadline, "metrics service never became ready"
            time.sleep(0.1)

    def kill(self, sig: int = signal.SIGKILL) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill(signal.SIGTERM)


def inference(deployment_id: str, **fields: object) -> InferenceEvent:
    values: dict[str, object] = {
        "deployment_id": deployment_id,
        "model_id": "hubpulse-demo/tiny-text-classifier",
        "status": "ok",
        "http_status": 200,
        "latency_ms": 10.0,
        "inputs": 1,
        "request_bytes": 100,
        "response_bytes": 50,
        "occurred_at": datetime.now(UTC),
        "user_id": TEST_USER,
        "org_id": TEST_ORG,
    }
    values.update(fields)
    return InferenceEvent.model_validate(values)


def running(deployment_id: str, user_id: str = TEST_USER, org_id: str = TEST_ORG) -> DeploymentEvent:
    """The transition that tells the metrics service whose a deployment is."""
    return DeploymentEvent(
        deployment_id=deployment_id,
        sequence=0,
        model_id="m",
        target="local",
        status=DeploymentStatus.RUNNING,
        version=1,
        user_id=user_id,
        org_id=org_id,
    )


def new_deployment() -> str:
    return f"dep-{uuid.uuid4().hex[:12]}"


ALERTED = new_deployment()  # the deployment the shared service's alert rules watch


class WebhookReceiver:
    """A loopback HTTP server that records alert deliveries; it answers the first one 503 to force a retry."""

    def __init__(self, fail_first: int = 1) -> None:
        self.received: list[dict[str, Any]] = []
        self.fail_first = fail_first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                if receiver.fail_first > 0:
                    receiver.fail_first -= 1
                    self.send_response(503)
                else:
                    receiver.received.append(body)
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        self._server = HTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def close(self) -> None:
        self._server.shutdown()
