"""One deployment's model server: a `Runtime` (ONNX Runtime, or a transformers pipeline) behind HTTP, run as its
own process by the local target (and as the container of the kubernetes target).

    python -m hubpulse_deployer.model_server (--model-dir DIR | --model-id REPO [--revision R]) --task TASK --port PORT

`POST /predict {"inputs": [str, ...]}` answers `{"outputs": [...]}` (one output per input); `GET /healthz`
answers once the pipeline is loaded (the port is bound only then, so a listening port means ready).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import typer
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response

from hubpulse_common.errors import InputError
from hubpulse_common.inference import parse_inputs
from hubpulse_deployer.runtime import Refused, Runtime, load
from hubpulse_deployer.runtime.fetch import fetch


def _json(content: Any, status: int = 200) -> Response:
    # numpy scalars and arrays come out of pipelines (token scores, embeddings)
    return Response(orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY), status, media_type="application/json")


def build_app(runtime: Runtime) -> FastAPI:
    task = runtime.task
    # runtimes are called from one thread at a time (pipelines are not thread-safe), off the event loop
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="runtime")
    app = FastAPI(title=f"model server ({task})", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/healthz")
    def healthz() -> Response:
        return _json({"status": "ok", "task": task, "runtime": runtime.name})

    @app.post("/predict")
    async def predict(request: Request) -> Response:
        try:
            inputs, _ = parse_inputs(task, orjson.loads(await request.body()))
        except (InputError, orjson.JSONDecodeError) as exc:
            return _json({"error": {"code": "bad_input", "message": str(exc)}}, 422)
        outputs = await asyncio.get_running_loop().run_in_executor(executor, runtime.predict_batch, inputs)
        return _json({"outputs": outputs})

    return app


def serve(
    task: str = typer.Option(..., help="the pipeline task (text-classification, ...)"),
    port: int = typer.Option(...),
    model_dir: str | None = typer.Option(None, help="a snapshot folder of the model"),
    model_id: str | None = typer.Option(None, help="else: a Hub repo to download first (HF_ENDPOINT, HF_TOKEN)"),
    revision: str = "main",
    host: str = "127.0.0.1",
) -> None:
    if model_dir is None:
        if model_id is None:
            raise typer.BadParameter("give --model-dir or --model-id")
        model_dir = fetch(model_id, revision, task)
    try:
        runtime = load(Path(model_dir), task)
    except Refused as exc:
        raise SystemExit(f"cannot serve {model_id or model_dir}: {exc}") from None
    uvicorn.run(build_app(runtime), host=host, port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    typer.run(serve)
