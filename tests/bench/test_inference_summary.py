"""`hubpulse bench inference`'s goal figures from a report: CPU-bound shares, batch sizes achieved."""

from __future__ import annotations

from typing import Any

import pytest

from hubpulse.bench.inference import _passes_since, summary


def _run(rps: float, client_share: float, cpu: dict[str, float], p95: float = 10.0) -> dict[str, Any]:
    return {"rps": rps, "p50_ms": 1.0, "p95_ms": p95, "cpu_share": {"client": client_share}, "cpu_ms_per_request": cpu}


def _hop(run: dict[str, Any]) -> dict[str, Any]:
    return {"sequential": run, "concurrent": run}


def test_shares_follow_cpu_per_call_not_requests_per_second() -> None:
    alone = _run(1000, 0.05, {"model_server": 0.25})  # client: 0.05 ms per call
    path = _run(900, 0.045, {"gateway": 0.7, "deployer": 0.5, "model_server": 0.35, "kafka": 0.05})
    proxy = _run(1000, 0.05, {"model_server": 0.25, "bare_proxy": 0.15})
    runs = {"model_server": _hop(alone), "bare_proxy": _hop(proxy), "deployer": _hop(path), "gateway": _hop(path)}
    out = summary({"unbatched": runs})["unbatched"]
    assert out["gateway_rps_share"] == pytest.approx(0.9)  # a slowed-down baseline run would flatter this one
    assert out["cpu_ms_per_call"] == {"model_server_alone": 0.3, "path": 1.65}
    assert out["cpu_bound_share_all_cores"] == pytest.approx(0.3 / 1.65, abs=1e-3)
    assert out["cpu_bound_share_one_core_per_process"] == pytest.approx(0.25 / 0.7, abs=1e-3)
    assert out["one_bare_hop"]["cpu_bound_share_all_cores"] == pytest.approx(0.3 / 0.45, abs=1e-3)


def test_batch_size_achieved() -> None:
    assert _passes_since((10, 10), (35, 210)) == {"passes": 25, "inputs": 200, "mean_batch_size": 8.0}
    assert _passes_since((10, 10), (10, 10)) == {"passes": 0, "inputs": 0, "mean_batch_size": None}
    assert _passes_since(None, (1, 1)) is None
