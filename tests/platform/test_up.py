"""`hubpulse up --demo` end to end: every service ready, kill -9 restarts, Ctrl-C leaves nothing, data survives."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import psutil
import pytest
from support.consumers import session_env
from support.quick import SMALL_BOOTSTRAP

from hubpulse.platform.layout import SERVICES, STORE_OFFSETS, free_base_port

pytestmark = pytest.mark.slow

READY_WITHIN_S = 90
# the scorer trains its bootstrap model before it is ready: on a small Hub (the demo's own is test_demo's)
SMALL_BOOTSTRAP_ENV = {f"HUBPULSE_{key.upper()}": str(value) for key, value in SMALL_BOOTSTRAP.items()}


def _ready(data_dir: Path) -> bool:
    """`hubpulse status` run in this process: polled every second, a new interpreter each time would take CPU
    from the platform starting up."""
    from typer.testing import CliRunner

    from hubpulse.cli import app

    return CliRunner().invoke(app, ["status", "--data-dir", str(data_dir)]).exit_code == 0


def _status(data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hubpulse", "status", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _start(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUBPULSE_")}
    env.update(session_env())
    env.update(SMALL_BOOTSTRAP_ENV)
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hubpulse",
            "up",
            "--demo",
            "--models",
            "300",
            "--days",
            "10",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _wait_all_ready(data_dir: Path, up: subprocess.Popen[bytes], within_s: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < within_s:
        assert up.poll() is None, "hubpulse up exited"
        if (data_dir / "state.json").exists() and _ready(data_dir):
            assert _status(data_dir).returncode == 0  # and the command itself says so
            return time.monotonic() - start
        time.sleep(1)
    raise AssertionError(f"not all ready within {within_s}s:\n{_status(data_dir).stdout}")


def _pids(data_dir: Path) -> dict[str, int]:
    state = json.loads((data_dir / "state.json").read_text())
    return {p["name"]: p["pid"] for p in state["processes"]}


def _stop(up: subprocess.Popen[bytes], pids: list[int]) -> None:
    up.send_signal(signal.SIGINT)
    assert up.wait(90) == 0
    alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"processes left running: {alive}"


def test_up_ready_restart_stop_and_data_survives(tmp_path: Path) -> None:
    data_dir = tmp_path / "platform"
    port = free_base_port()
    up = _start(data_dir, port)
    try:
        _wait_all_ready(data_dir, up, READY_WITHIN_S)
        pids = _pids(data_dir)
        assert set(SERVICES) <= set(pids)

        # kill -9 of a service: restarted (a new, live process) within 15 s, then ready again.
        victim = "features"
        os.kill(pids[victim], signal.SIGKILL)
        killed_at = time.monotonic()
        while (new_pid := _pids(data_dir)[victim]) in (pids[victim], None) or not psutil.pid_exists(new_pid):
            assert time.monotonic() - killed_at < 15, f"{victim} not restarted within 15 s"
            time.sleep(0.2)
        _wait_all_ready(data_dir, up, 60)

        async def mark() -> None:
            conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{port + STORE_OFFSETS['postgres']}/hubpulse")
            await conn.execute("CREATE TABLE IF NOT EXISTS survives (v text); INSERT INTO survives VALUES ('yes')")
            await conn.close()

        import asyncio

        asyncio.run(mark())
        _stop(up, list(_pids(data_dir).values()))
        assert _status(data_dir).returncode != 0  # down now

        up = _start(data_dir, port)
        _wait_all_ready(data_dir, up, READY_WITHIN_S)

        async def read() -> str | None:
            conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{port + STORE_OFFSETS['postgres']}/hubpulse")
            value = await conn.fetchval("SELECT v FROM survives")
            await conn.close()
            return value

        assert asyncio.run(read()) == "yes"
        _stop(up, list(_pids(data_dir).values()))
    finally:
        if up.poll() is None:
            up.kill()


def test_status_with_a_damaged_state_file_says_so(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from hubpulse.cli import app
    from hubpulse_common.errors import UserFacingError

    (tmp_path / "state.json").write_text('{"processes": [')  # e.g. a disk that filled up mid-write
    result = CliRunner().invoke(app, ["status", "--data-dir", str(tmp_path)])
    assert isinstance(result.exception, UserFacingError)  # the CLI's main prints it as one line, exit 2
    assert "state.json is unreadable" in str(result.exception)
