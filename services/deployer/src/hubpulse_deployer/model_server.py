"""One deployment's model server: a `Runtime` (ONNX Runtime, or a transformers pipeline) behind HTTP, run as its
own process by the local target (and as the container of the kubernetes target).

    python -m hubpulse_deployer.model_server (--model-dir DIR | --model-id REPO [--revision R]) --task TASK --port PORT

`POST /predict {"inputs": [str, ...]}` answers `{"outputs": [...]}` (one output per input); `GET /healthz`
answers once the pipeline is loaded (the port is bound only then, so a listening port means ready).
With `HUBPULSE_MODEL_SERVER_TOKEN` set (the local target always sets it), `/predict` takes only callers that send
it as `Authorization: Bearer <token>`: the deployer, and the gateway's data plane (`model_server_token`).
Concurrent calls are batched (`--max-batch-size`, `--max-wait-ms`; `batching.py`): one forward pass serves many.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import typer
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response

from hubpulse_common.errors import InputError
from hubpulse_common.inference import MODEL_SERVER_TOKEN_VARIABLE, parse_inputs
from hubpulse_deployer.batching import Batcher, OutputMismatch
from hubpulse_deployer.runtime import Refused, Runtime, load
from hubpulse_deployer.runtime.fetch import fetch


def _json(content: Any, status: int = 200) -> Response:
    # numpy scalars and arrays come out of pipelines (token scores, embeddings)
    return Response(orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY), status, media_type="application/json")


def build_app(
    runtime: Runtime, *, max_batch_size: int = 1, max_wait_ms: float = 0.0, token: str | None = None
) -> FastAPI:
    task = runtime.task
    expected = f"Bearer {token}".encode() if token else None
    # runtimes are called from one thread at a time (pipelines are not thread-safe), off the event loop
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="runtime")
    batcher = Batcher(runtime.predict_batch, executor, max_batch_size=max_batch_size, max_wait_s=max_wait_ms / 1000)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await batcher.close()
            executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title=f"model server ({task})", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.batcher = batcher

    @app.get("/healthz")
    def healthz() -> Response:
        batching = {
            "max_batch_size": batcher.max_batch_size,
            "max_wait_ms": max_wait_ms,
            "batches": batcher.batches,
            "inputs": batcher.inputs,
        }
        return _json({"status": "ok", "task": task, "runtime": runtime.name, "batching": batching})

    @app.post("/predict")
    async def predict(request: Request) -> Response:
        if expected is not None and not hmac.compare_digest(
            request.headers.get("authorization", "").encode(), expected
        ):
            return _json({"error": {"code": "unauthorized", "message": "this model server wants its token"}}, 401)
        try:
            inputs, _ = parse_inputs(task, orjson.loads(await request.body()))
        except (InputError, orjson.JSONDecodeError) as exc:
            return _json({"error": {"code": "bad_input", "message": str(exc)}}, 422)
        try:
            outputs = await batcher.predict(inputs)
        except OutputMismatch as exc:
            return _json({"error": {"code": "model_error", "message": str(exc)}}, 500)
        except Exception as exc:  # the runtime refused these inputs (alone: batching.py retries a failed batch)
            return _json({"error": {"code": "bad_input", "message": f"the model cannot take these inputs: {exc}"}}, 422)
        return _json({"outputs": outputs})

    return app


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
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    typer.run(serve)
