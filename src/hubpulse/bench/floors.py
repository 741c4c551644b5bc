"""Floors of the pipeline on this machine: what parts of it cost with nothing else around them.

`python -m hubpulse.bench.floors --models 2000000` measures, one after the other:
- the Hub walk alone: `HfApi.list_models` (the huggingface_hub client, 1000-model pages, the ingestor's
  expand fields) over a replay Hub serving a synthetic Hub of that many models; wall time, the client's CPU
  seconds and the replay Hub's CPU seconds (its start-up excluded);
- the event codec: encoding and decoding `--events` ModelSnapshot and ModelFeatures JSON events the way the
  services do (pydantic `model_validate_json` per message on the consumer side; orjson.loads for comparison),
  per event and scaled to `--models` events.
Run it under the benchmark lock; it uses one core for the client and one for the replay Hub.
"""

from __future__ import annotations

import gc
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import orjson
import psutil
import typer

from hubpulse.platform.stores import ProcessSpec, free_port, spawn, terminate, wait_port


def _cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def hub_walk(models: int) -> dict[str, Any]:
    """Seconds and CPU seconds of iterating `HfApi.list_models` over every model of a synthetic replay Hub."""
    from huggingface_hub import HfApi

    from hubpulse_ingestor.hub import EXPAND

    port = free_port()
    hubpulse = str(Path(sys.executable).parent / "hubpulse")
    argv = [hubpulse, "hub", "serve", "--synthetic", str(models), "--days", "1", "--port", str(port)]
    spec = ProcessSpec(name="hub", kind="hub", port=port, url=f"http://127.0.0.1:{port}", argv=argv)
    with tempfile.TemporaryDirectory(prefix="hubpulse-floors-") as tmp:
        proc = spawn(spec, Path(tmp) / "hub.log")
        try:
            started = time.perf_counter()
            if not wait_port(port, 900, proc):
                raise RuntimeError("the replay Hub did not start")
            setup_s = time.perf_counter() - started
            hub = psutil.Process(proc.pid)
            hub_cpu0, cpu0, wall0 = _cpu(hub), time.process_time(), time.perf_counter()
            seen = sum(1 for _ in HfApi(endpoint=spec.url).list_models(expand=cast(Any, list(EXPAND))))
            wall = time.perf_counter() - wall0
            out = {
                "models": seen,
                "hub_setup_s": round(setup_s, 1),
                "wall_s": round(wall, 2),
                "client_cpu_s": round(time.process_time() - cpu0, 2),
                "hub_cpu_s": round(_cpu(hub) - hub_cpu0, 2),
                "models_per_s": round(seen / wall),
            }
        finally:
            terminate(proc, "hub")
    return out


def _timed(fn: Callable[[], Any]) -> float:
    # the set-up's objects (a synthetic history) would make every collection of the timed code walk them
    gc.collect()
    gc.freeze()
    start = time.process_time()
    fn()
    seconds = time.process_time() - start
    gc.unfreeze()
    return seconds


def codec(events: int, scale_to: int) -> dict[str, Any]:
    """CPU seconds per event of encoding and decoding the two per-model topics' events."""
    from hubpulse.bench.stages import _snapshots
    from hubpulse_common.events import ModelFeatures, ModelSnapshot, ModelSnapshotBatch
    from hubpulse_common.features import HISTORY_WINDOW_DAYS
    from hubpulse_common.synthetic import SyntheticHub
    from hubpulse_features import service as features

    hub = SyntheticHub(events, HISTORY_WINDOW_DAYS, seed=1)
    today = _snapshots(hub, HISTORY_WINDOW_DAYS - 1)
    out: dict[str, Any] = {"events": len(today), "scaled_to": scale_to}

    def report(name: str, seconds: float, size: int) -> None:
        per = seconds / len(today)
        out[name] = {
            "cpu_s": round(seconds, 2),
            "per_s": round(1 / per) if per else None,
            f"cpu_s_at_{scale_to}": round(per * scale_to, 1),
        }
        out[name]["bytes_per_event"] = size

    encoded: list[bytes] = []
    size = 0
    seconds = _timed(lambda: encoded.extend(s.model_dump_json().encode() for s in today))
    size = sum(map(len, encoded)) // len(encoded)
    report("snapshot_encode_pydantic", seconds, size)
    report("snapshot_decode_pydantic", _timed(lambda: [ModelSnapshot.model_validate_json(b) for b in encoded]), size)
    report("snapshot_decode_orjson", _timed(lambda: [orjson.loads(b) for b in encoded]), size)

    history = [s for d in range(HISTORY_WINDOW_DAYS - 1) for s in _snapshots(hub, d)]
    frame = features.records_frame(features.snapshot_records(ModelSnapshotBatch.of_many([*history, *today])))
    del history
    feats = features.batch_features(
        frame, frame[frame["snapshot_date"] == frame["snapshot_date"].max()], cross_sectional=True
    )
    payloads: list[bytes] = []
    seconds = _timed(lambda: payloads.extend(v for _, v in features.feature_payloads(feats, provisional=False)))
    size = sum(map(len, payloads)) // len(payloads)
    report("features_encode_bulk", seconds, size)
    report("features_decode_pydantic", _timed(lambda: [ModelFeatures.model_validate_json(b) for b in payloads]), size)
    report("features_decode_orjson", _timed(lambda: [orjson.loads(b) for b in payloads]), size)
    return out


def main(
    models: int = typer.Option(2_000_000, help="Models on the replay Hub (and the event count figures scale to)"),
    events: int = typer.Option(100_000, help="Models whose events are encoded and decoded"),
    skip_hub: bool = typer.Option(False, help="Only the codec figures"),
    json_out: str | None = typer.Option(None, "--json", help="Write the figures here"),
) -> None:
    report: dict[str, Any] = {"loadavg_start": list(psutil.getloadavg())}
    if not skip_hub:
        report["hub_walk"] = hub_walk(models)
        typer.echo(f"hub walk: {report['hub_walk']}")
    report["codec"] = codec(events, models)
    report["loadavg_end"] = list(psutil.getloadavg())
    typer.echo(json.dumps(report, indent=2))
    if json_out:
        Path(json_out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    typer.run(main)
