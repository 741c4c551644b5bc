"""One deployment's model server: a `Runtime` (ONNX Runtime, or a transformers pipeline) behind HTTP, run as its
own process by the local target (and as the container of the kubernetes target).

    python -m hubpulse_deployer.model_server (--model-dir DIR | --model-id REPO [--revision R]) --task TASK --port PORT

`POST /predict {"inputs": [str, ...]}` answers `{"outputs": [...]}` (one output per input); `GET /healthz`
answers once the pipeline is loaded (the port is bound only then, so a listening port means ready); `GET /metrics`:
calls in flight (the kubernetes target's HPAs scale on it) and calls answered, by status (Prometheus text).
With `HUBPULSE_MODEL_SERVER_TOKEN` set (the local target always sets it), `/predict` takes only callers that send
it as `Authorization: Bearer <token>`: the deployer, and the gateway's data plane (`model_server_token`).
Concurrent calls are batched (`--max-batch-size`, `--max-wait-ms`; `batching.py`): one forward pass serves many.
HTTP is `http_server.py` (httptools under an asyncio protocol, on uvloop): uvicorn's ASGI cycle cost as much as the
model per call (docs/decisions/deployer.md, "Session 16").
"""

from __future__ import annotations

import asyncio
import hmac
import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import typer
import uvloop
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from hubpulse_common.errors import InputError
from hubpulse_common.inference import INFLIGHT_METRIC, MODEL_SERVER_TOKEN_VARIABLE, Input, parse_inputs
from hubpulse_deployer.batching import Batcher, BatcherClosed, OutputMismatch
from hubpulse_deployer.http_server import Answer, HttpServer, Pending, Request, detail
from hubpulse_deployer.runtime import Refused, Runtime, load
from hubpulse_deployer.runtime.fetch import fetch

_ROUTES = {"/predict": b"POST", "/healthz": b"GET", "/metrics": b"GET"}


def json_body(content: Any) -> bytes:
    # numpy scalars and arrays come out of pipelines (token scores, embeddings)
    return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def error_body(code: str, message: str) -> bytes:
    return json_body({"error": {"code": code, "message": message}})


def inputs_refused_body(exc: BaseException) -> bytes:
    """The 422 for inputs the runtime could not run."""
    return error_body("bad_input", f"the model cannot take these inputs: {exc}")


def expected_authorization(token: str | None) -> bytes | None:
    """The Authorization header a server with this token takes (None: any caller)."""
    return f"Bearer {token}".encode() if token else None


class CallRefused(Exception):
    """A predict call answered without running the model: its status and JSON body."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(status)
        self.status, self.body = status, body


def admitted_inputs(expected: bytes | None, authorization: bytes, task: str, body: bytes) -> list[Input]:
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

    STATUSES = (200, 401, 422, 499, 500, 503)  # 499: the caller closed its connection first (nginx's code)

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


class ModelServer:
    """The model server's three routes, answered from the request alone (`http_server.Handler`). Unknown paths and
    methods get FastAPI's answers (404 / 405 with `{"detail"}`, 307 to the path without a trailing slash), as when
    it was a FastAPI app."""

    def __init__(self, runtime: Runtime, *, max_batch_size: int, max_wait_ms: float, token: str | None) -> None:
        self.runtime = runtime
        self.max_wait_ms = max_wait_ms
        self._expected = expected_authorization(token)
        # runtimes are called from one thread at a time (pipelines are not thread-safe), off the event loop
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="runtime")
        self.batcher = Batcher(
            runtime.predict_batch, self._executor, max_batch_size=max_batch_size, max_wait_s=max_wait_ms / 1000
        )
        self.registry = CollectorRegistry()  # the server's own: one process, one server, and tests build several
        self.calls = CallMetrics(self.registry)

    def respond(self, request: Request) -> Answer | Pending:
        path = request.path
        allowed = _ROUTES.get(path)
        if allowed is None and path.rstrip("/") in _ROUTES:  # FastAPI's redirect of a trailing slash
            location = b"http://" + request.host + path.rstrip("/").encode()
            location += b"?" + request.query if request.query else b""
            return Answer(307, b"", headers=((b"location", location),))
        if allowed is None:
            return detail(404, "Not Found")
        if request.method != allowed:
            return Answer(405, b'{"detail":"Method Not Allowed"}', headers=((b"allow", allowed),))
        if path == "/predict":
            return self._predict(request)
        if path == "/metrics":
            return Answer(200, generate_latest(self.registry), content_type=CONTENT_TYPE_LATEST.encode())
        return Answer(200, self._health())

    async def close(self) -> None:
        await self.batcher.close()
        self._executor.shutdown(wait=False, cancel_futures=True)

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

    def _predict(self, request: Request) -> Answer | Pending:
        self.calls.inflight += 1
        try:
            inputs = admitted_inputs(self._expected, request.authorization, self.runtime.task, request.body)
            future = self.batcher.submit(inputs)
        except CallRefused as refused:
            return self._answered(refused.status, refused.body)
        except BatcherClosed as exc:  # not the caller's fault: another replica (or a retry) can answer it
            return self._answered(503, error_body("shutting_down", str(exc)))
        return Pending(future, self._predicted)

    def _predicted(self, future: asyncio.Future[list[Any]]) -> Answer:
        if future.cancelled():  # the caller went away before its answer
            return self._answered(499, b"")
        exc = future.exception()
        if exc is None:
            return self._answered(200, json_body({"outputs": future.result()}))
        if isinstance(exc, OutputMismatch):
            return self._answered(500, error_body("model_error", str(exc)))
        if isinstance(exc, BatcherClosed):
            return self._answered(503, error_body("shutting_down", str(exc)))
        # the runtime refused these inputs (alone: batching.py retries a failed batch call by call)
        return self._answered(422, inputs_refused_body(exc))

    def _answered(self, status: int, body: bytes) -> Answer:
        calls = self.calls
        calls.inflight -= 1
        calls.answered[status] += 1
        return Answer(status, body)


async def run(server: ModelServer, host: str, port: int, shutdown_timeout_s: float) -> None:
    """Serves until SIGTERM or SIGINT, then answers the calls it has (at most `shutdown_timeout_s`) and stops."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    http = HttpServer(server.respond)
    await http.start(host, port)
    await stop.wait()
    await http.close(shutdown_timeout_s)
    await server.close()


def serve(
    task: str = typer.Option(..., help="the pipeline task (text-classification, ...)"),
    port: int = typer.Option(...),
    model_dir: str | None = typer.Option(None, help="a snapshot folder of the model"),
    model_id: str | None = typer.Option(None, help="else: a Hub repo to download first (HF_ENDPOINT, HF_TOKEN)"),
    revision: str = "main",
    host: str = "127.0.0.1",
    max_batch_size: int = typer.Option(1, min=1, help="inputs per forward pass across concurrent calls; 1: none"),
    max_wait_ms: float = typer.Option(0.0, min=0, help="how long a call waits for others to fill its batch"),
    shutdown_timeout_s: float = typer.Option(8.0, min=0, help="on SIGTERM, how long calls in flight may finish"),
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
    server = ModelServer(runtime, max_batch_size=max_batch_size, max_wait_ms=max_wait_ms, token=token)
    # bound only now that the model is loaded: a listening port means ready
    uvloop.run(run(server, host, port, shutdown_timeout_s))


if __name__ == "__main__":
    typer.run(serve)
