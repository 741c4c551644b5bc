"""`hubpulse bench watches` end to end on a small run: its own broker, MongoDB and metrics process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_bench_watches_measures_every_alerts_webhook(tmp_path: Path) -> None:
    out = tmp_path / "watches.json"
    hubpulse = str(Path(sys.executable).parent / "hubpulse")
    args = [hubpulse, "bench", "watches", "--models", "8", "--paced", "3", "--spacing-ms", "100", "--json", str(out)]
    result = subprocess.run(args, capture_output=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    report = json.loads(out.read_text())
    assert report["ok"] is True
    assert (report["paced"]["alerts"], report["burst"]["alerts"]) == (3, 5)
    assert 0 < report["paced"]["p50_ms"] <= report["paced"]["p95_ms"] <= report["paced"]["max_ms"]
    assert 'hubpulse_watch_delivery_lag_seconds_count{channel="webhook"} 8.0' in report["server_lag_histogram"]


def test_bench_watches_refuses_more_paced_than_models() -> None:
    hubpulse = str(Path(sys.executable).parent / "hubpulse")
    result = subprocess.run(
        [hubpulse, "bench", "watches", "--models", "5", "--paced", "5"], capture_output=True, timeout=60, check=False
    )
    assert result.returncode != 0
    assert "--paced must be below --models" in result.stderr.decode()
    assert "Traceback" not in result.stderr.decode()
