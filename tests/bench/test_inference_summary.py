"""`hubpulse bench inference`'s goal figures from a report: CPU-bound shares, batch sizes achieved."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from hubpulse.bench.inference import _passes_since, _requests, batching_bound, median_pair, speedup, summary, text


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


def test_batching_bound_from_the_measured_costs() -> None:
    """h from the batched run (its CPU per call minus the model's share at its batch size), m1 = the unbatched CPU
    per call minus h; bound (h + m1) / (h + mB), the hand-off shared by the batch."""
    forward = {"cpu_ms_per_input_by_batch_size": {"1": 0.03, "8": 0.024, "16": 0.02}, "handed_off_ms": 0.05}
    bound = batching_bound(0.15, (0.1, 8.0), forward, 16)
    h = 0.1 - (0.024 + 0.02 / 8)
    mb = 0.02 + 0.02 / 16
    assert bound.pop("m1_needed_for_3x_ms") == pytest.approx(2 * h + 3 * mb, abs=1e-4)
    assert bound == {
        "h_ms": round(h, 4),
        "m1_ms": round(0.15 - h, 4),
        "mB_ms": round(mb, 4),
        "batch_size": 16,
        "h_from": "batched run",
        "bound": round(0.15 / (h + mb), 2),
        "bound_free_http": round((0.15 - h) / mb, 2),
    }
    assert batching_bound(0.15, (0.1, 8.0), forward, 10)["batch_size"] == 8  # the largest size the server batches
    # no batched run: h from the hand-off measured in-process
    assert batching_bound(0.15, None, forward, 16)["h_ms"] == 0.1
    assert batching_bound(0.15, None, {}, 16) == {}
    alone = _run(1000, 0.05, {"model_server": 0.15})
    together = {**_run(1500, 0.04, {"model_server": 0.1}), "forward_passes": {"mean_batch_size": 8.0}}
    report = {
        "unbatched": {"model_server": _hop(alone)},
        "batched": {"model_server": _hop(together)},
        "batching": {"max_batch_size": 16},
        "forward_pass": forward,
    }
    # the caller's CPU per call (0.05 and 0.04 * 1000 / 1500 ms, as `_cpu_ms` rounds it) is in the bound with the caller
    caller = (0.05 + round(0.04 * 1000 / 1500, 3)) / 2
    assert summary(report)["batching_bound"] == batching_bound(0.15, (0.1, 8.0), forward, 16, caller)


def test_the_callers_cpu_per_call_lowers_the_bound() -> None:
    """A caller on the same cores pays c per call batched or not: (c + h + m1) / (c + h + mB) < (h + m1) / (h + mB)."""
    forward = {"cpu_ms_per_input_by_batch_size": {"1": 0.03, "16": 0.02}, "handed_off_ms": 0.05}
    alone = batching_bound(0.15, (0.1, 16.0), forward, 16)
    bound = batching_bound(0.15, (0.1, 16.0), forward, 16, 0.05)
    h, m1, mb = bound["h_ms"], bound["m1_ms"], bound["mB_ms"]
    assert {k: bound[k] for k in alone} == alone  # the rest unchanged
    assert bound["c_ms"] == 0.05
    assert bound["bound_with_caller"] == round((0.05 + h + m1) / (0.05 + h + mb), 2)
    assert bound["bound_with_caller"] < bound["bound"]
    assert bound["m1_needed_for_3x_with_caller_ms"] == pytest.approx(2 * (0.05 + h) + 3 * mb, abs=5e-4)  # h, mB rounded
    assert "c_ms" not in alone


def test_the_forward_pass_is_measured_on_the_inputs_the_calls_send() -> None:
    """The in-process costs (m1, mB of the bound) come from `text(i)`, the same inputs the load generator sends: the
    pass's cost grows with the input's length (a shorter text there understated m1 and mB)."""
    for hop, wrap in (("model_server", lambda t: [t]), ("gateway", lambda t: t)):
        calls = _requests(hop, "d1", 3, {}, 5)
        assert [orjson.loads(c.partition(b"\r\n\r\n")[2])["inputs"] for c in calls] == [
            wrap(text(i)) for i in (5, 6, 7)
        ]
    assert len({len(text(i)) for i in range(100)}) <= 4  # about one length, so batches pad little


def _round(unbatched_rps: float, batched_rps: float, batched_p95: float) -> dict[str, Any]:
    unbatched = _run(unbatched_rps, 0.05, {"model_server": 0.3}, p95=6.0)
    batched = {**_run(batched_rps, 0.05, {"model_server": 0.1}, p95=batched_p95), "forward_passes": None}
    return {"unbatched": unbatched, "batched": batched, "batching": speedup(unbatched, batched)}


def test_the_batching_goal_is_read_on_the_median_of_the_alternated_rounds() -> None:
    """One pair slowed by another session's load on the shared cores does not decide: the goal's figures are the
    median pair's, each pair is kept, and the single pair of the hop runs stays beside them."""
    rounds = [_round(3000, 10500, 1.8), _round(4400, 6400, 6.0), _round(2900, 10900, 1.7)]
    alone = _hop(_run(3000, 0.05, {"model_server": 0.3}, p95=6.0))
    together = _hop(_run(4000, 0.05, {"model_server": 0.1}, p95=6.0))
    report = {"unbatched": {"model_server": alone}, "batched": {"model_server": together}, "rounds": rounds}
    out = summary(report)["batching_model_server"]
    assert out["rounds"] == 3
    assert out["rps_speedup_by_round"] == [3.5, 1.45, 3.76]
    assert out["rps_speedup"] == 3.5
    assert out["p95_ratio_by_round"] == [0.3, 1.0, 0.28]
    assert out["p95_ratio"] == 0.3
    assert out["rps_by_round"] == [[3000, 10500], [4400, 6400], [2900, 10900]]
    assert out["meets_goal"] is True
    assert out["single_run"]["rps_speedup"] == pytest.approx(1.33)
    assert median_pair(rounds[1:2])["meets_goal"] is False
    # without rounds (a report of an earlier bench), the single pair is the figure
    del report["rounds"]
    assert summary(report)["batching_model_server"]["rps_speedup"] == pytest.approx(1.33)


def test_the_floor_servers_rounds_are_read_apart_from_the_model_servers() -> None:
    """The floor reference's pairs give `batching_floor`; the goal's figures stay the model server's."""
    rounds = [_round(3000, 10500, 1.8), _round(2900, 10900, 1.7), _round(3100, 9900, 1.9)]
    floor = [_round(7000, 9100, 2.0), _round(6800, 8200, 2.4), _round(7200, 9400, 1.9)]
    alone = _hop(_run(3000, 0.05, {"model_server": 0.3}, p95=6.0))
    together = _hop(_run(4000, 0.05, {"model_server": 0.1}, p95=6.0))
    report = {"unbatched": {"model_server": alone}, "batched": {"model_server": together}, "rounds": rounds}
    out = summary({**report, "floor_rounds": floor})
    assert out["batching_floor"]["rps_speedup_by_round"] == [1.3, 1.21, 1.31]
    assert out["batching_floor"]["rps_speedup"] == 1.3
    assert out["batching_floor"]["meets_goal"] is False
    assert out["batching_model_server"] == summary(report)["batching_model_server"]
    assert "batching_floor" not in summary(report)
