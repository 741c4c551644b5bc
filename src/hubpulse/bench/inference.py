"""`hubpulse bench inference`: one predict call through each hop, sequential and concurrent, batched and not.

Starts PostgreSQL, the broker, MongoDB, S3, the replay Hub (which hosts the demo models), then auth, the
deployer and the gateway as processes, signs one user up, and deploys the demo text classifier twice to the
target: once with dynamic batching off (`max_batch_size` 1) and once with it on. For each deployment it
sends single-input predict calls to four hops, each from a keep-alive load generator on loopback:

- `model_server`: `POST /predict` on the model server's own port, with its token (local target only);
- `bare_proxy`: the same through `bare_proxy.py`, a Python hop that only forwards (the floor of any hop);
- `deployer`: `POST /deployments/{id}/predict` on the deployer, as the gateway calls it;
- `gateway`: `POST /v1/deployments/{id}/predict` with the user's access token (auth, ownership, idempotency,
  metrics and the inference event included); the gateway calls the model server itself (its data plane) for a
  local deployment, so its path has no deployer hop;

first one at a time (latency), then `concurrency` in flight (throughput), after a warm-up. Each run reports
p50/p95/p99, req/s and the CPU seconds per second of each process tree (the machine's cores are shared by
everything, the load generator included), so the table says where the time went; the batch size the model
server achieved per run (`forward_passes`); and the forward pass's CPU per input by batch size, in-process
(`forward_pass`). `summary` holds the goals, with the shares that the CPU per call allows next to the req/s ones.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import uvloop

from hubpulse.bench.configs import InferenceBenchConfig
from hubpulse.bench.loadgen import load, post_json
from hubpulse.bench.pipeline import _hub_spec, started_child
from hubpulse.platform.stores import (
    ProcessSpec,
    Running,
    create_database,
    free_port,
    kafka_spec,
    mongo_spec,
    postgres_spec,
    s3_spec,
    service_spec,
    wait_ready,
)
from hubpulse_common.errors import UserFacingError
from hubpulse_common.inference import MODEL_SERVER_TOKEN_VARIABLE, model_server_token

MODEL = "hubpulse-demo/tiny-text-classifier"
# bare_proxy: the floor of any Python hop (bare_proxy.py) in front of the same model server, for reference
HOPS = ("model_server", "bare_proxy", "deployer", "gateway")
SERVICES = ("gateway", "deployer", "model_server")
Say = Callable[[str], None]


def _bare_proxy(model_server_url: str) -> ProcessSpec:
    port = free_port()
    argv = [sys.executable, "-m", "hubpulse.bench.bare_proxy", "--target", f"{model_server_url}/predict"]
    return ProcessSpec(
        name="bare_proxy", kind="service", port=port, url=f"http://127.0.0.1:{port}", argv=[*argv, "--port", str(port)]
    )


def _floor_server(model_dir: Path, max_batch_size: int, token: str) -> ProcessSpec:
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "hubpulse.bench.floor_model_server",
        "--model-dir",
        str(model_dir),
        "--port",
        str(port),
    ]
    return ProcessSpec(
        name=f"floor_{max_batch_size}",
        kind="service",
        port=port,
        url=f"http://127.0.0.1:{port}",
        argv=[*argv, "--max-batch-size", str(max_batch_size)],
        env={MODEL_SERVER_TOKEN_VARIABLE: token},
    )


def _demo_model_dir() -> Path | None:
    """The demo model's files as the replay Hub built them; None when they are not there."""
    from hubpulse.hub.demo_models import DemoRepos, default_cache_dir

    built = DemoRepos(default_cache_dir()).get(MODEL)
    return None if built is None else built.root


@dataclass
class _Deployment:
    id: str
    model_server_url: str | None
    model_server_pid: int | None


def _deploy(client: httpx.Client, target: str, batching: dict[str, Any], timeout_s: float = 300) -> _Deployment:
    body = {"model_id": MODEL, "target": target, "config": {"batching": batching}}
    created = client.post("/v1/deployments", json=body)
    if created.status_code != 202:
        raise UserFacingError(f"deploying {MODEL} to {target} failed: {created.status_code} {created.text[:300]}")
    deployment_id = created.json()["id"]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        doc = client.get(f"/v1/deployments/{deployment_id}").json()
        if doc["status"] == "running":
            endpoint = doc.get("endpoint") or {}
            return _Deployment(deployment_id, endpoint.get("url"), endpoint.get("pid"))
        if doc["status"] == "failed":
            raise UserFacingError(f"the deployment failed: {doc.get('reason')}")
        time.sleep(0.5)
    raise UserFacingError(f"the deployment was not running within {timeout_s:.0f} s")


def text(i: int) -> str:
    """The i-th call's input: each call its own text (nothing a cache could answer), all of about one length."""
    return f"call {i}: the movie was {'good' if i % 2 else 'awful'} and the food was {'fine' if i % 3 else 'bad'}"


def _requests(hop: str, deployment_id: str, count: int, headers: dict[str, str], offset: int) -> list[bytes]:
    """Single-input calls, each with its own text."""
    out = []
    for i in range(offset, offset + count):
        text_i = text(i)
        if hop in ("model_server", "bare_proxy"):
            out.append(post_json("/predict", orjson.dumps({"inputs": [text_i]}), headers))
        elif hop == "deployer":
            path = f"/deployments/{deployment_id}/predict"
            out.append(post_json(path, orjson.dumps({"inputs": text_i}), headers))
        else:
            path = f"/v1/deployments/{deployment_id}/predict"
            out.append(post_json(path, orjson.dumps({"inputs": text_i}), headers))
    return out


def _measure(
    cfg: InferenceBenchConfig,
    deployment: _Deployment,
    ports: dict[str, int],
    headers: dict[str, dict[str, str]],
    watch: dict[str, int],
    say: Say,
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    offset = 0
    for hop in HOPS:
        if hop not in ports:
            continue
        runs: dict[str, Any] = {}
        for mode, count, concurrency in (
            ("sequential", cfg.sequential_requests, 1),
            ("concurrent", cfg.requests, cfg.concurrency),
        ):
            warm = _requests(hop, deployment.id, cfg.warmup, headers[hop], offset)
            offset += cfg.warmup
            uvloop.run(load(ports[hop], warm, concurrency, cfg.max_seconds))
            measured = _requests(hop, deployment.id, count, headers[hop], offset)
            offset += count
            before = _forward_passes(deployment)
            # the reference proxy is no part of the other hops' paths: watched on its own hop only
            watched = {n: pid for n, pid in watch.items() if n != "bare_proxy" or hop == "bare_proxy"}
            r = runs[mode] = _own_cpu(uvloop.run(load(ports[hop], measured, concurrency, cfg.max_seconds, watched)))
            r["forward_passes"] = _passes_since(before, _forward_passes(deployment))
            passes = f", mean batch {r['forward_passes']['mean_batch_size']}" if r["forward_passes"] else ""
            latency = f"p50 {r['p50_ms']} ms, p95 {r['p95_ms']} ms"
            say(f"{hop} {mode}: {latency}, {r['rps']} req/s, errors {r['errors']}{passes}")
        results[hop] = runs
    return results


def _alternated(
    cfg: InferenceBenchConfig, alone: dict[str, tuple[_Deployment, int, dict[str, str]]], say: Say, name: str = ""
) -> list[dict[str, Any]]:
    """The model server alone at `concurrency` in flight, unbatched then batched, `cfg.rounds` times back to back:
    each pair of runs meets the same minute of the other load on the shared cores, and the batching goal is read
    on the median pair, not on one run of each taken minutes apart. `name` labels another pair of servers."""
    rounds = []
    offset = 10**9  # texts no other run sent
    for i in range(cfg.rounds):
        pair: dict[str, Any] = {}
        for label in ("unbatched", "batched"):
            deployment, port, headers = alone[label]
            calls = _requests("model_server", deployment.id, cfg.requests, headers, offset)
            offset += cfg.requests
            before = _forward_passes(deployment)
            watch = {"model_server": deployment.model_server_pid} if deployment.model_server_pid else {}
            run = pair[label] = uvloop.run(load(port, calls, cfg.concurrency, cfg.max_seconds, watch))
            run["forward_passes"] = _passes_since(before, _forward_passes(deployment))
        pair["batching"] = speedup(pair["unbatched"], pair["batched"])
        b = pair["batching"]
        say(f"{name}round {i + 1}: batched / unbatched {b['rps_speedup']}x req/s, p95 {b['p95_ratio']}x")
        rounds.append(pair)
    return rounds


def _floor_rounds(cfg: InferenceBenchConfig, logs: Path, say: Say) -> list[dict[str, Any]]:
    """The alternated rounds again on the floor of a batching model server (floor_model_server.py): the same model,
    token check and JSON at the kernel's cost of HTTP, passes inline. Empty when the demo model is not built."""
    model_dir = _demo_model_dir()
    if model_dir is None:
        return []
    token = secrets.token_hex(16)
    headers = {"authorization": f"Bearer {token}"}
    servers: dict[str, tuple[_Deployment, int, dict[str, str]]] = {}
    with ExitStack() as stack:
        for label, size in (("unbatched", 1), ("batched", cfg.max_batch_size)):
            server = stack.enter_context(started_child(_floor_server(model_dir, size, token), logs))
            servers[label] = (_Deployment(f"floor-{label}", server.spec.url, server.pid), server.spec.port, headers)
            warm = _requests("model_server", label, cfg.warmup, headers, 2 * 10**9)
            uvloop.run(load(server.spec.port, warm, cfg.concurrency, cfg.max_seconds))
        return _alternated(cfg, servers, say, name="floor ")


def _forward_passes(deployment: _Deployment) -> tuple[int, int] | None:
    """(forward passes, inputs) the model server ran so far, from its /healthz; None without one."""
    if deployment.model_server_url is None:
        return None
    batching = httpx.get(deployment.model_server_url + "/healthz", timeout=30).json()["batching"]
    return batching["batches"], batching["inputs"]


def _passes_since(before: tuple[int, int] | None, after: tuple[int, int] | None) -> dict[str, Any] | None:
    """What the batcher did during a run: forward passes, inputs, and the batch size it achieved."""
    if before is None or after is None:
        return None
    passes, inputs = after[0] - before[0], after[1] - before[1]
    return {"passes": passes, "inputs": inputs, "mean_batch_size": round(inputs / passes, 2) if passes else None}


def _own_cpu(run: dict[str, Any]) -> dict[str, Any]:
    """The deployer's figures without its model server child's (the process trees nest)."""
    for figure in ("cpu_share", "cpu_ms_per_request"):
        values = run[figure]
        if "deployer" in values and "model_server" in values:
            values["deployer"] = round(values["deployer"] - values["model_server"], 3)
    return run


def _forward_pass_cost(batch_sizes: tuple[int, ...] = (1, 2, 4, 8, 16), inputs: int = 2000) -> dict[str, Any]:
    """CPU ms per input of the demo model's forward pass by batch size, in this process (no HTTP): what batching
    can save per call at most; and one input's pass handed to a runtime thread and awaited, as the model server runs
    it (`handed_off_ms`: the pass plus the hand-off, which a batch pays once). Empty when the replay Hub's build of
    the model is not there."""
    from hubpulse_deployer.batching import Batcher
    from hubpulse_deployer.runtime import load as load_runtime

    model_dir = _demo_model_dir()
    if model_dir is None:
        return {}
    runtime = load_runtime(model_dir, "text-classification")
    texts = [text(i) for i in range(inputs)]  # the served calls' inputs: a pass's cost grows with their length
    out = {}
    for size in batch_sizes:
        batches = [texts[i : i + size] for i in range(0, inputs, size)]
        for batch in batches[:20]:  # warm-up
            runtime.predict_batch(batch)
        started = time.process_time()
        for batch in batches:
            runtime.predict_batch(batch)
        out[str(size)] = round((time.process_time() - started) * 1000 / inputs, 4)

    async def handed_off() -> float:
        with ThreadPoolExecutor(max_workers=1) as executor:  # as model_server.py runs its runtime
            batcher = Batcher(runtime.predict_batch, executor, max_batch_size=1, max_wait_s=0)
            for text in texts[:20]:
                await batcher.predict([text])
            started = time.process_time()  # this process's CPU: the runtime thread's included
            for text in texts:
                await batcher.predict([text])
            await batcher.close()
            return (time.process_time() - started) * 1000 / inputs

    return {"cpu_ms_per_input_by_batch_size": out, "handed_off_ms": round(uvloop.run(handed_off()), 4)}


def batching_bound(
    unbatched_cpu_ms: float,
    batched: tuple[float, float] | None,
    forward_pass: dict[str, Any],
    batch_size: int,
    caller_ms: float | None = None,
) -> dict[str, Any]:
    """What batching can give at most on this model with this server, by CPU per call.

    With h the per-call cost of the server around the model (HTTP, framework, JSON, the batcher), m1 a single
    input's pass with its hand-off to the runtime thread, and mB the per-input cost in a batch of `batch_size` (the
    pass at that size, one hand-off shared by the batch): a server that batches perfectly does at most
    (h + m1) / (h + mB) times the calls per CPU second of one that does not, and m1 / mB with a free HTTP layer.
    h is measured on the batched run (`batched`: its CPU per call and mean batch size), where the model's share of
    a call is smallest: its CPU per call minus the model's cost per input at the batch size it reached. m1 is the
    unbatched run's CPU per call minus h. Without a batched run, h is the unbatched CPU minus the hand-off measured
    in-process, which overstates m1 (an idle loop's thread wake-ups cost more than a busy server's).

    `caller_ms` (c, the load generator's CPU per call) is paid per call too, on the same cores: the measured req/s
    ratio is bound by (c + h + m1) / (c + h + mB), which `bound_with_caller` gives."""
    by_size = {int(k): float(v) for k, v in (forward_pass.get("cpu_ms_per_input_by_batch_size") or {}).items()}
    if 1 not in by_size or "handed_off_ms" not in forward_pass:
        return {}
    handed_off = float(forward_pass["handed_off_ms"])
    handoff = max(handed_off - by_size[1], 0.0)

    def per_input(size: float) -> float:
        measured = max(k for k in by_size if k <= max(size, 1))
        return by_size[measured] + handoff / max(size, 1)

    size = max(k for k in by_size if k <= batch_size)
    if batched is not None:
        h = max(batched[0] - per_input(batched[1]), 0.0)
        m1 = max(unbatched_cpu_ms - h, 0.0)
    else:
        m1 = handed_off
        h = max(unbatched_cpu_ms - m1, 0.0)
    mb = per_input(size)
    with_caller = {}
    if caller_ms is not None:
        c = caller_ms
        with_caller = {
            "c_ms": round(c, 4),
            "bound_with_caller": round((c + h + m1) / (c + h + mb), 2),
            "m1_needed_for_3x_with_caller_ms": round(2 * (c + h) + 3 * mb, 4),
        }
    return {
        "h_ms": round(h, 4),
        "m1_ms": round(m1, 4),
        "mB_ms": round(mb, 4),
        "batch_size": size,
        "h_from": "batched run" if batched is not None else "in-process hand-off",
        "bound": round((h + m1) / (h + mb), 2),
        "bound_free_http": round(m1 / mb, 2),
        # what m1 would need to be for 3x at this h and mB (m1 >= 2h + 3mB)
        "m1_needed_for_3x_ms": round(2 * h + 3 * mb, 4),
        **with_caller,
    }


def _signup(gateway: str) -> str:
    """The access token of a fresh user."""
    creds = {"email": "bench@example.com", "password": "correct horse battery staple"}
    with httpx.Client(base_url=gateway, timeout=30) as client:
        client.post("/v1/auth/signup", json=creds).raise_for_status()
        token: str = client.post("/v1/auth/login", json=creds).json()["access_token"]
    return token


def run_inference_bench(cfg: InferenceBenchConfig, say: Say = print) -> dict[str, Any]:
    report: dict[str, Any] = {
        "model": MODEL,
        "target": cfg.target,
        "requests": cfg.requests,
        "concurrency": cfg.concurrency,
        "sequential_requests": cfg.sequential_requests,
        "batching": {"max_batch_size": cfg.max_batch_size, "max_wait_ms": cfg.max_wait_ms},
        "cpu_count": os.cpu_count(),
        "loadavg_start": [round(v, 2) for v in os.getloadavg()],
    }
    with tempfile.TemporaryDirectory(prefix="hubpulse-bench-inference-") as tmp, ExitStack() as stack:
        work, logs = Path(tmp), Path(tmp) / "logs"

        def start(spec: ProcessSpec, timeout_s: float = 120) -> Running:
            return stack.enter_context(started_child(spec, logs, timeout_s))

        say("starting PostgreSQL, broker, MongoDB, S3 and the replay Hub")
        pg = start(postgres_spec(work, free_port()))
        kafka = start(kafka_spec(free_port()))
        mongo = start(mongo_spec(work, free_port()))
        s3 = start(s3_spec(work, free_port()))
        hub = start(_hub_spec(20, 1, free_port()), timeout_s=600)
        base = pg.spec.url.rsplit("/", 1)[0]
        secret = secrets.token_hex(16)
        for name in ("auth", "gateway"):
            asyncio.run(create_database(base + "/postgres", name))
        env = {
            "HUBPULSE_KAFKA_BOOTSTRAP": kafka.spec.url,
            "HUBPULSE_MONGO_URL": mongo.spec.url,
            "HUBPULSE_S3_ENDPOINT": s3.spec.url,
            "HUBPULSE_S3_ACCESS_KEY_ID": "hubpulse",
            "HF_ENDPOINT": hub.spec.url,
            "HUBPULSE_DATA_DIR": str(work / "data"),
            "HUBPULSE_LOG_LEVEL": "WARNING",
            # one load generator is one client: lift the per-key/IP limit, keep the middleware running
            "HUBPULSE_API_RATE_LIMIT": "100000000/minute",
            # shared by the gateway and the deployer: the gateway calls local model servers itself (its data plane)
            "HUBPULSE_MODEL_SERVER_SECRET": secret,
        }
        auth = start(service_spec("auth", free_port(), {**env, "HUBPULSE_DATABASE_URL": base + "/auth"}))
        # the deployer verifies each caller's access token against the auth service's keys
        deployer = start(service_spec("deployer", free_port(), {**env, "HUBPULSE_AUTH_URL": auth.spec.url}))
        upstreams = {"HUBPULSE_AUTH_URL": auth.spec.url, "HUBPULSE_DEPLOYER_URL": deployer.spec.url}
        gateway_env = {**env, **upstreams, "HUBPULSE_DATABASE_URL": base + "/gateway"}
        gateway = start(service_spec("gateway", free_port(), gateway_env))
        for child in (auth, deployer, gateway):
            wait_ready(child.spec.url)
        bearer = {"authorization": f"Bearer {_signup(gateway.spec.url)}"}
        headers = {"model_server": {}, "bare_proxy": {}, "deployer": bearer, "gateway": bearer}
        with httpx.Client(base_url=gateway.spec.url, headers=bearer, timeout=60) as client:
            deployments: list[_Deployment] = []
            alone: dict[str, tuple[_Deployment, int, dict[str, str]]] = {}  # each model server's port and token
            for label, batching in (
                ("unbatched", {"max_batch_size": 1}),
                ("batched", {"max_batch_size": cfg.max_batch_size, "max_wait_ms": cfg.max_wait_ms}),
            ):
                say(f"deploying {MODEL} to {cfg.target} ({label})")
                deployment = _deploy(client, cfg.target, batching)
                deployments.append(deployment)  # kept running for the alternated rounds
                ports = {"deployer": deployer.spec.port, "gateway": gateway.spec.port}
                watch = {"gateway": gateway.pid, "deployer": deployer.pid, "kafka": kafka.pid, "mongo": mongo.pid}
                with ExitStack() as hop_stack:
                    if deployment.model_server_url and deployment.model_server_pid:
                        token = model_server_token(secret, deployment.id, deployment.model_server_url)
                        headers["model_server"] = headers["bare_proxy"] = {"authorization": f"Bearer {token}"}
                        ports["model_server"] = int(deployment.model_server_url.rsplit(":", 1)[1])
                        watch["model_server"] = deployment.model_server_pid
                        alone[label] = (deployment, ports["model_server"], headers["model_server"])
                        proxy = hop_stack.enter_context(started_child(_bare_proxy(deployment.model_server_url), logs))
                        ports["bare_proxy"], watch["bare_proxy"] = proxy.spec.port, proxy.pid
                    report[label] = _measure(cfg, deployment, ports, headers, watch, say)
            if len(alone) == 2:
                report["rounds"] = _alternated(cfg, alone, say)
                report["floor_rounds"] = _floor_rounds(cfg, logs, say)
            for deployment in deployments:
                client.delete(f"/v1/deployments/{deployment.id}")
    report["forward_pass"] = _forward_pass_cost() if cfg.target == "local" else {}
    report["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
    report["summary"] = summary(report)
    return report


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """The goals: gateway p50 overhead over the model server, gateway throughput share, batching speed-up."""
    out: dict[str, Any] = {}
    unbatched, batched = report.get("unbatched", {}), report.get("batched", {})
    for label, runs in (("unbatched", unbatched), ("batched", batched)):
        if "model_server" in runs and "gateway" in runs:
            ms, gw = runs["model_server"], runs["gateway"]
            cpu = gw["concurrent"]["cpu_ms_per_request"]
            out[label] = {
                "gateway_p50_overhead_ms": round(gw["sequential"]["p50_ms"] - ms["sequential"]["p50_ms"], 2),
                "deployer_p50_overhead_ms": round(
                    runs["deployer"]["sequential"]["p50_ms"] - ms["sequential"]["p50_ms"], 2
                ),
                "gateway_rps_share": round(gw["concurrent"]["rps"] / ms["concurrent"]["rps"], 3),
                # CPU ms per call through the gateway, per process, at `concurrency` in flight
                "gateway_path_cpu_ms": {k: v for k, v in cpu.items() if k != "client"},
                **_cpu_bounds(ms["concurrent"], gw["concurrent"]),
            }
            if "bare_proxy" in runs:  # the same figures for one hop that does nothing but forward
                out[label]["one_bare_hop"] = _cpu_bounds(ms["concurrent"], runs["bare_proxy"]["concurrent"])
    for hop in HOPS:
        if hop in unbatched and hop in batched:
            out[f"batching_{hop}"] = speedup(unbatched[hop]["concurrent"], batched[hop]["concurrent"])
    if rounds := report.get("rounds"):
        # the goal's figures: the median of the alternated pairs; the single pair above kept beside them
        single = out.get("batching_model_server")
        out["batching_model_server"] = {**median_pair(rounds), "single_run": single}
        unbatched_run = _median_run([r["unbatched"] for r in rounds])
        together = _median_run([r["batched"] for r in rounds])
    else:
        unbatched_run = unbatched.get("model_server", {}).get("concurrent", {})
        together = batched.get("model_server", {}).get("concurrent", {})
    if floor := report.get("floor_rounds"):
        # what the same model allows at the floor of a server on these cores (floor_model_server.py)
        out["batching_floor"] = median_pair(floor)
    alone = unbatched_run.get("cpu_ms_per_request", {}).get("model_server")
    passes = together.get("forward_passes") or {}
    batched_cost = (
        (together["cpu_ms_per_request"]["model_server"], passes["mean_batch_size"])
        if passes.get("mean_batch_size") and together.get("cpu_ms_per_request", {}).get("model_server") is not None
        else None
    )
    forward = report.get("forward_pass") or {}
    # the load generator's CPU per call to the model server alone, batched or not: on the same cores as the server
    alone_runs = [run for run in (unbatched_run, together) if run]
    callers = [_cpu_ms(run)["client"] for run in alone_runs]
    caller = sum(callers) / len(callers) if callers else None
    if alone is not None and (bound := batching_bound(alone, batched_cost, forward, _batch_size(report), caller)):
        out["batching_bound"] = bound
    return out


def speedup(u: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Batched over unbatched: one run of each (the load generator's figures) at the same concurrency."""
    return {
        "rps_speedup": round(b["rps"] / u["rps"], 2),
        # the speed-up the CPU per call allows (all processes and the load generator), which the other load on
        # shared cores does not move
        "cpu_speedup": round(sum(_cpu_ms(u).values()) / sum(_cpu_ms(b).values()), 2),
        "mean_batch_size": (b.get("forward_passes") or {}).get("mean_batch_size"),
        "p95_ratio": round(b["p95_ms"] / u["p95_ms"], 2),
        "model_server_cpu_ms_per_request": [
            u["cpu_ms_per_request"].get("model_server"),
            b["cpu_ms_per_request"].get("model_server"),
        ],
    }


# #18's batching goal: at `concurrency` in flight, >= 3x the unbatched req/s with p95 no worse than 2x
GOAL_RPS_SPEEDUP, GOAL_P95_RATIO = 3.0, 2.0


def median_pair(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The alternated rounds' batching figures: the median of each ratio over the pairs, and each pair's."""
    pairs = [r["batching"] for r in rounds]

    def median(key: str) -> float | None:
        values = [p[key] for p in pairs if p.get(key) is not None]
        return round(float(statistics.median(values)), 2) if values else None

    rps, p95 = median("rps_speedup"), median("p95_ratio")
    return {
        "rounds": len(pairs),
        "rps_speedup": rps,
        "cpu_speedup": median("cpu_speedup"),
        "mean_batch_size": median("mean_batch_size"),
        "p95_ratio": p95,
        "meets_goal": rps is not None and p95 is not None and rps >= GOAL_RPS_SPEEDUP and p95 <= GOAL_P95_RATIO,
        "rps_speedup_by_round": [p["rps_speedup"] for p in pairs],
        "p95_ratio_by_round": [p["p95_ratio"] for p in pairs],
        "rps_by_round": [[r["unbatched"]["rps"], r["batched"]["rps"]] for r in rounds],
        "model_server_cpu_ms_per_request_by_round": [p["model_server_cpu_ms_per_request"] for p in pairs],
    }


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median req/s among `runs` (an odd count gives one of them; an even one the upper middle)."""
    return sorted(runs, key=lambda r: r["rps"])[len(runs) // 2]


def _batch_size(report: dict[str, Any]) -> int:
    size: int = (report.get("batching") or {}).get("max_batch_size") or 16
    return size


def _cpu_ms(run: dict[str, Any]) -> dict[str, float]:
    """CPU ms per call of each process of a run, the load generator ("client") included."""
    client = run["cpu_share"]["client"] * 1000 / run["rps"] if run["rps"] else 0.0
    return {**run["cpu_ms_per_request"], "client": round(client, 3)}


def _cpu_bounds(alone: dict[str, Any], path: dict[str, Any]) -> dict[str, Any]:
    """The gateway's throughput share that the CPU per call allows, whatever else the machine runs.

    Req/s swing 2-5x with the other load on shared cores; CPU ms per call barely move. With every core busy,
    throughput is cores / (CPU ms per call over all processes); with one process the bottleneck (each is one
    event loop, at most one core), it is 1 / (that process's CPU ms per call). The share is the ratio of the
    gateway path's bound to the model server alone's, for each bound.
    """
    a, p = _cpu_ms(alone), _cpu_ms(path)
    return {
        "cpu_ms_per_call": {"model_server_alone": round(sum(a.values()), 3), "path": round(sum(p.values()), 3)},
        "cpu_bound_share_all_cores": round(sum(a.values()) / sum(p.values()), 3),
        "cpu_bound_share_one_core_per_process": round(
            max(a.get(n, 0.0) for n in SERVICES) / max(p.get(n, 0.0) for n in (*SERVICES, "bare_proxy")), 3
        ),
    }


def table(report: dict[str, Any]) -> Any:
    """The report as a rich table (what `hubpulse bench inference` prints)."""
    from rich.table import Table

    t = Table(title=f"bench inference: {report['model']} on {report['target']}, c={report['concurrency']}")
    for column in ("deployment", "hop", "mode", "p50 ms", "p95 ms", "req/s", "errors", "CPU share"):
        t.add_column(column)
    for label in ("unbatched", "batched"):
        for hop, runs in report.get(label, {}).items():
            for mode, r in runs.items():
                cpu = ", ".join(f"{k} {v:.2f}" for k, v in r["cpu_share"].items())
                row = (label, hop, mode, f"{r['p50_ms']}", f"{r['p95_ms']}", f"{r['rps']}", str(r["errors"]), cpu)
                t.add_row(*row)
    for name, values in report.get("summary", {}).items():
        t.add_row(name, "", "", ", ".join(f"{k}={v}" for k, v in values.items()))
    return t
