"""Every dashboard panel and every rule, evaluated by a real Prometheus scraping a running platform.

`hubpulse up --demo` runs the whole platform (embedded stores, replay Hub, the seven services); Debian's
`prometheus` scrapes it every second, with postgres_exporter in front of its PostgreSQL, and loads the rules
file. The test drives the pipeline (the demo's Hub days, plus two poison snapshots), the API (search, cache
hits, a 404, logins until the limit, a WebSocket) and a deployment (local model server, predict calls), then
asks Prometheus' HTTP API for each panel query and each rule expression: all must parse, and every panel must
return series. A metric renamed in code without its dashboard leaves its panel empty and fails here.

Not scraped: kafka_exporter and percona's mongodb_exporter, which neither Debian nor PyPI ship (Debian's
prometheus-mongodb-exporter is a 2018 fork with other metric names). Their panels are checked to parse.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
import yaml
from aiokafka import AIOKafkaProducer
from conftest import Store, _start
from support.consumers import session_env

from hubpulse.platform.layout import SERVICES, STORE_OFFSETS, free_base_port
from hubpulse.platform.stores import ProcessSpec, free_port, terminate
from hubpulse_common.events import ModelSnapshot, ModelSnapshotBatch

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((REPO / "deploy" / "grafana" / "dashboards").glob("*.json"))
RULES = REPO / "deploy" / "prometheus" / "rules" / "hubpulse.rules.yml"
MODEL = "hubpulse-demo/tiny-text-classifier"
# metric names of the exporters that cannot run here (see the module docstring): kafka_*, mongodb_*, but not
# hubpulse_kafka_*
PARSE_ONLY = re.compile(r"(?<![\w:])(kafka|mongodb)_\w+")
# the metrics service's own alert rule: fires on the first predict call, so its gauges and counters move
ALERT_RULES = [{"name": "predict-slow", "metric": "p95_latency_ms", "threshold": 0, "window_s": 300}]


@dataclass
class Platform:
    base: int
    prometheus: str

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.base + SERVICES[service][1]}"


def _binary(name: str) -> str:
    path = shutil.which(name)
    # Debian packages `prometheus` and `prometheus-postgres-exporter`; .ci/run installs them when missing
    assert path is not None, f"{name} not found: apt-get install {name}"
    return path


def _start_platform(data_dir: Path, base: int, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUBPULSE_")}
    env.update(session_env())
    env |= {"HUBPULSE_ALERT_RULES": json.dumps(ALERT_RULES), "HUBPULSE_ALERT_INTERVAL_S": "1"}
    argv = [sys.executable, "-m", "hubpulse", "up", "--demo", "--models", "60", "--days", "3"]
    with log.open("wb") as out:  # its one-line error, should it stop
        return subprocess.Popen(
            [*argv, "--port", str(base), "--data-dir", str(data_dir)], env=env, stdout=out, stderr=subprocess.STDOUT
        )


def _wait_ready(base: int, up: subprocess.Popen[bytes], log: Path, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    waiting = set(SERVICES)
    while waiting and time.monotonic() < deadline:
        assert up.poll() is None, f"hubpulse up exited: {log.read_text(errors='replace')[-1000:]}"
        for name in list(waiting):
            try:
                if httpx.get(f"http://127.0.0.1:{base + SERVICES[name][1]}/readyz", timeout=2).status_code == 200:
                    waiting.discard(name)
            except httpx.HTTPError:
                pass
        time.sleep(1)
    assert not waiting, f"not ready within {within_s} s: {sorted(waiting)}"


def _prometheus_config(path: Path, base: int, exporter_port: int) -> None:
    jobs = [
        {"job_name": name, "static_configs": [{"targets": [f"127.0.0.1:{base + offset}"]}]}
        for name, (_, offset) in SERVICES.items()
    ]
    jobs.append({"job_name": "postgres", "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}]})
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": jobs,
    }
    path.write_text(yaml.safe_dump(config))


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    root = tmp_path_factory.mktemp("observability")
    base = free_base_port()
    up = _start_platform(root / "platform", base, root / "up.log")
    started: list[Store] = []
    try:
        _wait_ready(base, up, root / "up.log", 180)
        database = f"postgresql://postgres@127.0.0.1:{base + STORE_OFFSETS['postgres']}/hubpulse?sslmode=disable"
        exporter_port = free_port()
        started.append(
            _start(
                ProcessSpec(
                    name="postgres-exporter",
                    argv=[_binary("prometheus-postgres-exporter"), f"--web.listen-address=127.0.0.1:{exporter_port}"],
                    kind="store",
                    url=f"http://127.0.0.1:{exporter_port}",
                    port=exporter_port,
                    env={"DATA_SOURCE_NAME": database},
                ),
                root / "logs",
            )
        )
        _prometheus_config(root / "prometheus.yml", base, exporter_port)
        port = free_port()
        argv = [
            _binary("prometheus"),
            f"--config.file={root / 'prometheus.yml'}",
            f"--storage.tsdb.path={root / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ]
        spec = ProcessSpec(name="prometheus", argv=argv, kind="store", url=f"http://127.0.0.1:{port}", port=port)
        started.append(_start(spec, root / "logs"))
        yield Platform(base, spec.url)
    finally:
        for store in reversed(started):
            terminate(store.proc, store.spec.name)
        up.send_signal(signal.SIGINT)
        try:
            up.wait(90)
        except subprocess.TimeoutExpired:
            up.kill()


async def _query(client: httpx.AsyncClient, expr: str) -> dict[str, Any]:
    body: dict[str, Any] = (await client.get("/api/v1/query", params={"query": expr})).json()
    return body


async def _wait_for(client: httpx.AsyncClient, expr: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not (await _query(client, expr))["data"]["result"]:
        assert time.monotonic() < deadline, f"no series for {expr} within {timeout_s} s"
        await asyncio.sleep(1)


async def _poison_snapshots(bootstrap: str) -> None:
    """One value that is not a snapshot message, one that is but that PostgreSQL refuses (downloads beyond bigint)."""
    good = ModelSnapshot(model_id="obs/poison", snapshot_date=dt.date(2025, 1, 1), downloads=1, likes=0)
    out_of_range = {**json.loads(ModelSnapshotBatch.of([good]).model_dump_json()), "downloads": [10**20]}
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(ModelSnapshotBatch.topic, b"not json", key=b"obs/garbage")
        await producer.send_and_wait(ModelSnapshotBatch.topic, json.dumps(out_of_range).encode(), key=b"obs/poison")
    finally:
        await producer.stop()


async def _drive_api(gateway: str) -> dict[str, str]:
    """Search (a cache miss, then hits), a 404, a user, logins until the limit, a WebSocket; the user's headers."""
    async with httpx.AsyncClient(base_url=gateway, timeout=30) as client:
        for _ in range(3):
            assert (await client.get("/v1/models", params={"limit": 5})).status_code == 200
        assert (await client.get("/v1/models/nobody/nothing")).status_code == 404
        creds = {"email": "ops@example.com", "password": "correct horse battery staple"}
        assert (await client.post("/v1/auth/signup", json=creds)).status_code in (200, 201)
        login = (await client.post("/v1/auth/login", json=creds)).json()
        headers = {"authorization": f"Bearer {login['access_token']}"}
        statuses = [
            (await client.post("/v1/auth/login", json={**creds, "password": "wrong password!"})).status_code
            for _ in range(12)
        ]
        assert 429 in statuses, statuses  # auth's per-account login limit, passed through the gateway
    async with websockets.connect(gateway.replace("http", "ws") + "/v1/live/picks") as socket:
        assert json.loads(await socket.recv())["type"] == "snapshot"
    return headers


async def _drive_deployment(gateway: str, headers: dict[str, str]) -> None:
    async with httpx.AsyncClient(base_url=gateway, headers=headers, timeout=60) as client:
        created = await client.post("/v1/deployments", json={"model_id": MODEL, "target": "local"})
        assert created.status_code == 202, created.text
        deployment_id = created.json()["id"]
        deadline = time.monotonic() + 240  # the model server imports torch: about a minute on a busy machine
        while (status := (await client.get(f"/v1/deployments/{deployment_id}")).json()["status"]) != "running":
            assert status not in ("failed", "deleted"), status
            assert time.monotonic() < deadline, status
            await asyncio.sleep(1)
        path = f"/v1/deployments/{deployment_id}/predict"
        for inputs in ("I love this movie", ["great film", "awful day"], "fine"):
            assert (await client.post(path, json={"inputs": inputs})).status_code == 200
        assert (await client.post(path, json={"inputs": []})).status_code == 422


def _panel_queries() -> list[tuple[str, str, str]]:
    """(dashboard, panel, expr) of every panel target in the committed dashboard JSON."""
    found = []
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                found.append((board["title"], panel["title"], target["expr"]))
    return found


def _rule_exprs() -> list[tuple[str, str]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [(rule.get("alert") or rule["record"], rule["expr"]) for group in groups for rule in group["rules"]]


@pytest.mark.timeout(900)
async def test_every_panel_and_rule_evaluates_against_the_running_platform(platform: Platform) -> None:
    gateway = platform.url("gateway")
    kafka = f"127.0.0.1:{platform.base + STORE_OFFSETS['kafka']}"
    async with httpx.AsyncClient(base_url=platform.prometheus, timeout=30) as prom:
        await _wait_for(prom, 'up{job="gateway"} == 1', 60)
        await _poison_snapshots(kafka)
        headers = await _drive_api(gateway)
        await _drive_deployment(gateway, headers)
        # the demo's days flow through features (a day closes) to the scorer; the poison reaches the DLQ
        await _wait_for(prom, "hubpulse_scorer_scored_total", 240)
        await _wait_for(prom, "hubpulse_kafka_dead_lettered_total > 0", 120)

        panels = _panel_queries()
        assert len(panels) >= 60
        # only the store exporters' panels may stay empty here, and they are all on the Stores dashboard
        assert {board for board, _, expr in panels if PARSE_ONLY.search(expr)} == {"hubpulse / Stores"}
        failed: list[str] = []
        empty: dict[str, str] = {}
        deadline = time.monotonic() + 90  # rates need two scrapes after the last event; quantiles need events
        while True:
            failed, empty = [], {}
            for dashboard, title, expr in panels:
                answer = await _query(prom, expr)
                if answer["status"] != "success":
                    failed.append(f"{dashboard} / {title}: {answer.get('error')}")
                elif not answer["data"]["result"] and not PARSE_ONLY.search(expr):
                    empty[f"{dashboard} / {title}"] = expr
            if failed or not empty or time.monotonic() > deadline:
                break
            await asyncio.sleep(2)
        assert failed == [], failed
        assert empty == {}, f"panels without data: {json.dumps(empty, indent=1)}"

        for name, expr in _rule_exprs():
            answer = await _query(prom, expr)
            assert answer["status"] == "success", (name, answer.get("error"))
        loaded = (await prom.get("/api/v1/rules")).json()["data"]["groups"]
        rules = [rule for group in loaded for rule in group["rules"]]
        assert len(rules) == len(_rule_exprs())
        assert [r["name"] for r in rules if r["health"] != "ok"] == [], [r.get("lastError") for r in rules]
        # the platform's own alerts see what happened: the poison went to the dead-letter topic
        firing = (await _query(prom, 'ALERTS{alertname="HubpulseDeadLettersGrowing"}'))["data"]["result"]
        assert {r["metric"]["topic"] for r in firing} == {ModelSnapshotBatch.topic}
