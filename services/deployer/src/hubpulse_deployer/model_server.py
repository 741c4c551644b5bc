"""One deployment's model server: a `Runtime` (ONNX Runtime, or a transformers pipeline) behind HTTP, run as its
own process by the local target (and as the container of the kubernetes target).

    python -m hubpulse_deployer.model_server (--model-dir DIR | --model-id REPO [--revision R]) --task TASK --port PORT

`POST /predict {"inputs": [str, ...]}` answers `{"outputs": [...]}` (one output per input); `GET /healthz`
answers once the pipeline is loaded (the port is bound only then, so a listening port means ready); `GET /metrics`:
calls in flight (the kubernetes target's HPAs scale on it) and calls answered, by status (Prometheus text).
With `HUBPULSE_MODEL_SERVER_TOKEN` set (the local target always sets it), `/predict` takes only callers that send
it as `Authorization: Bearer <token>`: the deployer, and the gateway's data plane (`model_server_token`).
Concurrent calls are batched (`--max-batch-size`, `--max-wait-ms`; `batching.py`): one forward pass serves many.
A plain ASGI app on uvicorn: FastAPI's routing and request machinery was half of a call's CPU here.
"""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import typer
import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from starlette.datastructures import URL
from starlette.types import Receive, Scope, Send

from hubpulse_common.errors import InputError
from hubpulse_common.inference import INFLIGHT_METRIC, MODEL_SERVER_TOKEN_VARIABLE, parse_inputs
from hubpulse_deployer.batching import Batcher, BatcherClosed, OutputMismatch
from hubpulse_deployer.runtime import Refused, Runtime, load
from hubpulse_deployer.runtime.fetch import fetch

_ROUTES = {"/predict": "POST", "/healthz": "GET", "/metrics": "GET"}


async def read_body(receive: Receive) -> bytes:
    """An ASGI request's whole body."""
    chunks, more = [], True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


async def send_json(
    send: Send,
    status: int,
    body: bytes,
    extra: tuple[tuple[bytes, bytes], ...] = (),
    content_type: bytes = b"application/json",
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def json_body(content: Any) -> bytes:
    # numpy scalars and arrays come out of pipelines (token scores, embeddings)
    return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def error_body(code: str, message: str) -> bytes:
    return json_body({"error": {"code": code, "message": message}})


def expected_authorization(token: str | None) -> bytes | None:
    """The Authorization header a server with this token takes (None: any caller)."""
    return f"Bearer {token}".encode() if token else None


class CallRefused(Exception):
    """A predict call answered without running the model: its status and JSON body."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(status)
        self.status, self.body = status, body


def admitted_inputs(expected: bytes | None, authorization: bytes, task: str, body: bytes) -> list[str]:
    """A predict call's inputs; CallRefused: 401 without the server's token, 422 for a body the task does not take."""
    if expected is not None and not hmac.compare_digest(authorization, expected):
        raise CallRefused(401, error_body("unauthorized", "this model server wants its token"))
    try:
        inputs, _ = parse_inputs(task, orjson.loads(body))
    except (InputError, orjson.JSONDecodeError) as exc:
        raise CallRefused(422, error_body("bad_input", str(exc))) from None
    return inputs


class CallMetrics:
    """Predict calls in flight and answered, by status, as plain counts that the registry reads at scrape time.
    prometheus_client's Gauge and Counter take a lock per update (three per call); the counts are only touched on
    the event loop, which also serves /metrics, so they need none."""

    STATUSES = (200, 401, 422, 500, 503)

    def __init__(self, registry: CollectorRegistry) -> None:
        self.inflight = 0
        self.answered = dict.fromkeys(self.STATUSES, 0)
        self._created = time.time()
        registry.register(self)

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(INFLIGHT_METRIC, "Predict calls being answered", value=self.inflight)
        calls = CounterMetricFamily(
            "hubpulse_model_server_calls", "Predict calls answered, by status", labels=["status"], created=self._created
        )
        for status, count in self.answered.items():
            calls.add_metric([str(status)], count, created=self._created)
        yield calls


class ModelServerApp:
    """The model server's two routes as a plain ASGI app: no routing table, no dependency solving, no middleware
    stack, the per-call work of FastAPI that a two-route server does not need (docs/decisions/deployer.md). Unknown
    paths and methods get FastAPI's answers (404 / 405 with `{"detail"}`, 307 to the path without a trailing slash)."""

    def __init__(self, runtime: Runtime, *, max_batch_size: int, max_wait_ms: float, token: str | None) -> None:
        self.runtime = runtime
        self.max_wait_ms = max_wait_ms
        self._expected = expected_authorization(token)
        # runtimes are called from one thread at a time (pipelines are not thread-safe), off the event loop
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="runtime")
        self.batcher = Batcher(
            runtime.predict_batch, self._executor, max_batch_size=max_batch_size, max_wait_s=max_wait_ms / 1000
        )
        self.registry = CollectorRegistry()  # the app's own: one process, one server, and tests build several
        self.calls = CallMetrics(self.registry)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        allowed = _ROUTES.get(path)
        if allowed is None and path.rstrip("/") in _ROUTES:  # FastAPI's redirect of a trailing slash
            location = str(URL(scope={**scope, "path": path.rstrip("/")})).encode()
            await send({"type": "http.response.start", "status": 307, "headers": [(b"location", location)]})
            await send({"type": "http.response.body", "body": b""})
        elif allowed is None:
            await send_json(send, 404, b'{"detail":"Not Found"}')
        elif method != allowed:
            await send_json(send, 405, b'{"detail":"Method Not Allowed"}', ((b"allow", allowed.encode()),))
        elif path == "/predict":
            calls = self.calls
            calls.inflight += 1
            try:
                status, body = await self._predict(scope, await read_body(receive))
            finally:
                calls.inflight -= 1
            calls.answered[status] += 1
            await send_json(send, status, body)
        elif path == "/metrics":
            await send_json(send, 200, generate_latest(self.registry), content_type=CONTENT_TYPE_LATEST.encode())
        else:
            await send_json(send, 200, self._health())

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.batcher.close()
                self._executor.shutdown(wait=False, cancel_futures=True)
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _health(self) -> bytes:
        batcher = self.batcher
        batching = {
            "max_batch_size": batcher.max_batch_size,
            "max_wait_ms": self.max_wait_ms,
            "batches": batcher.batches,
            "inputs": batcher.inputs,
        }
        return json_body(
            {"status": "ok", "task": self.runtime.task, "runtime": self.runtime.name, "batching": batching}
        )

    async def _predict(self, scope: Scope, body: bytes) -> tuple[int, bytes]:
        sent = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        try:
            inputs = admitted_inputs(self._expected, sent, self.runtime.task, body)
        except CallRefused as refused:
            return refused.status, refused.body
        try:
            outputs = await self.batcher.predict(inputs)
        except OutputMismatch as exc:
            return 500, error_body("model_error", str(exc))
        except BatcherClosed as exc:  # not the caller's fault: another replica (or a retry) can answer it
            return 503, error_body("shutting_down", str(exc))
        except Exception as exc:  # the runtime refused these inputs (alone: batching.py retries a failed batch)
            return 422, error_body("bad_input", f"the model cannot take these inputs: {exc}")
        return 200, json_body({"outputs": outputs})


def build_app(
    runtime: Runtime, *, max_batch_size: int = 1, max_wait_ms: float = 0.0, token: str | None = None
) -> ModelServerApp:
    return ModelServerApp(runtime, max_batch_size=max_batch_size, max_wait_ms=max_wait_ms, token=token)


def serve(
    task: str = typer.Option(..., help="the pipeline task (text-classification, ...)"),
    port: int = typer.Option(...),
    model_dir: str | None = typer.Option(None, help="a snapshot folder of the model"),
    model_id: str | None = typer.Option(None, help="else: a Hub repo to download first (HF_ENDPOINT, HF_TOKEN)"),
    revision: str = "main",
    host: str = "127.0.0.1",
    max_batch_size: int = typer.Option(1, min=1, help="inputs per forward pass across concurrent calls; 1: none"),
    max_wait_ms: float = typer.Option(0.0, min=0, help="how long a call waits for others to fill its batch"),
) -> None:
    if model_dir is None:
        if model_id is None:
            raise typer.BadParameter("give --model-dir or --model-id")
        model_dir = fetch(model_id, revision, task)
    try:
        runtime = load(Path(model_dir), task)
    except Refused as exc:
        raise SystemExit(f"cannot serve {model_id or model_dir}: {exc}") from None
    token = os.environ.get(MODEL_SERVER_TOKEN_VARIABLE) or None
    app = build_app(runtime, max_batch_size=max_batch_size, max_wait_ms=max_wait_ms, token=token)
    # bound only now that the model is loaded: a listening port means ready. uvicorn picks uvloop and httptools
    # (uvicorn[standard], through hubpulse-common) by itself.
    # no proxy headers: callers reach it directly (the gateway, the deployer) and nothing reads the client address
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, ws="none", proxy_headers=False)


if __name__ == "__main__":
    typer.run(serve)
