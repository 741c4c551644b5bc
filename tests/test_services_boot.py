"""Every service boots as its own process against the real stores, is ready, and stops cleanly on SIGTERM."""

from __future__ import annotations

import importlib
import os
import re
import signal
import subprocess
import sys
import time

import httpx
import pytest

from hubpulse.platform.stores import free_port, wait_port
from hubpulse_common import __version__
from hubpulse_common.topology import Topology

SERVICES = [
    "hubpulse_ingestor",
    "hubpulse_features",
    "hubpulse_scorer",
    "hubpulse_gateway",
    "hubpulse_auth",
    "hubpulse_deployer",
    "hubpulse_metrics",
]


@pytest.mark.parametrize("package", SERVICES)
def test_service_boots_ready_and_stops(
    package: str, service_env: dict[str, str], tmp_path, request: pytest.FixtureRequest
) -> None:
    port = free_port()
    env = {**os.environ, **service_env, "HUBPULSE_PORT": str(port), "HUBPULSE_DATA_DIR": str(tmp_path)}
    if package == "hubpulse_metrics":  # its new consumer groups would first read the session's whole backlog
        env["HUBPULSE_KAFKA_BOOTSTRAP"] = request.getfixturevalue("metrics_kafka").url
        # a group of its own: the metrics tests' processes (the group `metrics`) may still be in theirs, and each
        # leave then waits on a rebalance of them (a 34 s stop, once, under the full suite)
        env["HUBPULSE_CONSUMER_GROUP"] = f"metrics-boot-{port}"
    if package == "hubpulse_features":
        # on the session broker it would read the day-complete signals of every earlier test and close those days
        # in the session's database, which other tests' features own
        env["HUBPULSE_KAFKA_BOOTSTRAP"] = request.getfixturevalue("own_kafka").url
    logged = tmp_path / "stderr.log"  # a file, not a pipe nobody reads until the end: logging never blocks it
    with logged.open("wb") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", package], env=env, stderr=stderr)
    try:
        assert wait_port(port, 60, proc), logged.read_text()[-3000:]
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/healthz").json()["status"] == "ok"
        assert httpx.get(f"{base}/healthz").json()["version"] == __version__
        deadline = time.monotonic() + 30
        while (ready := httpx.get(f"{base}/readyz")).status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ready.status_code == 200, ready.text
        assert "hubpulse_http_requests_total" in httpx.get(f"{base}/metrics").text
        declared = _declared_consumers(package, env.get("HUBPULSE_CONSUMER_GROUP"))
        assert _consumers_running(base, declared) == declared
        missing = httpx.get(f"{base}/no-such-route")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "not_found"
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    assert code == 0
    # every service runs on uvloop (its COPYs and batches cost the plain asyncio loop CPU per socket write)
    listening = next(line for line in logged.read_text().splitlines() if "service.listening" in line)
    assert "uvloop" in listening, listening


def _topology(package: str) -> Topology:
    return importlib.import_module(f"{package}.topology").TOPOLOGY


def _declared_consumers(package: str, group: str | None = None) -> set[tuple[str, str]]:
    """(topic, group) of each consumer the topology declares; `group`: the group the process was given instead."""
    topology = _topology(package)
    return {(event.topic, group or topology.consumer_group) for event in topology.consumes}


def _consumers_running(base: str, declared: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """(topic, group) of every consumer the running service polls, read off its lag gauge (each consumer's gauge
    appears after its first poll: waited for up to 20 s, so a slow one is not taken for a missing one)."""
    series = re.compile(r'^hubpulse_kafka_consumer_lag\{group="([^"]+)",topic="([^"]+)"\}', re.M)
    deadline = time.monotonic() + 20
    while True:
        found = {(topic, group) for group, topic in series.findall(httpx.get(f"{base}/metrics").text)}
        if found == declared or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_bad_setting_is_one_clear_line(service_env: dict[str, str]) -> None:
    env = {**os.environ, **service_env, "HUBPULSE_PORT": "not-a-port"}
    result = subprocess.run([sys.executable, "-m", "hubpulse_metrics"], env=env, capture_output=True, timeout=60)
    assert result.returncode == 2
    stderr = result.stderr.decode()
    assert "HUBPULSE_PORT" in stderr
    assert "Traceback" not in stderr


def test_unreachable_database_is_one_clear_line(service_env: dict[str, str]) -> None:
    env = {
        **os.environ,
        **service_env,
        "HUBPULSE_PORT": str(free_port()),
        "HUBPULSE_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/hubpulse",
    }
    result = subprocess.run([sys.executable, "-m", "hubpulse_auth"], env=env, capture_output=True, timeout=60)
    assert result.returncode == 2
    assert "HUBPULSE_DATABASE_URL" in result.stderr.decode()
    assert "Traceback" not in result.stderr.decode()


def test_port_taken_is_one_clear_line(service_env: dict[str, str]) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, **service_env, "HUBPULSE_PORT": str(port)}
        result = subprocess.run([sys.executable, "-m", "hubpulse_metrics"], env=env, capture_output=True, timeout=60)
    assert result.returncode == 2
    assert f"HUBPULSE_PORT={port}" in result.stderr.decode()
    assert "Traceback" not in result.stderr.decode()
