"""One deployment's model server: a transformers pipeline behind HTTP, run as its own process by the local target.

    python -m hubpulse_deployer.model_server (--model-dir DIR | --model-id REPO [--revision R]) --task TASK --port PORT

`POST /predict {"inputs": [str, ...]}` answers `{"outputs": [...]}` (one output per input); `GET /healthz`
answers once the pipeline is loaded (the port is bound only then, so a listening port means ready).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import orjson
import typer
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response

from hubpulse_common.errors import InputError
from hubpulse_common.inference import parse_inputs


def _json(content: Any, status: int = 200) -> Response:
    # numpy scalars and arrays come out of pipelines (token scores, embeddings)
    return Response(orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY), status, media_type="application/json")


def build_app(model_dir: str, task: str) -> FastAPI:
    from transformers import pipeline

    # the task is only known at run time; the overloads type pipelines by literal task names
    pipe = pipeline(cast(Any, task), model=model_dir, device="cpu")
    # pipelines are not thread-safe: one worker thread runs them, off the event loop
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pipeline")
    app = FastAPI(title=f"model server ({task})", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/healthz")
    def healthz() -> Response:
        return _json({"status": "ok", "task": task})

    @app.post("/predict")
    async def predict(request: Request) -> Response:
        try:
            inputs, _ = parse_inputs(task, orjson.loads(await request.body()))
        except (InputError, orjson.JSONDecodeError) as exc:
            return _json({"error": {"code": "bad_input", "message": str(exc)}}, 422)
        outputs = await asyncio.get_running_loop().run_in_executor(executor, pipe, inputs)
        return _json({"outputs": outputs})

    return app


def serve(
    task: str = typer.Option(..., help="the transformers pipeline task"),
    port: int = typer.Option(...),
    model_dir: str | None = typer.Option(None, help="a snapshot folder of the model"),
    model_id: str | None = typer.Option(None, help="else: a Hub repo to download first (HF_ENDPOINT, HF_TOKEN)"),
    revision: str = "main",
    host: str = "127.0.0.1",
) -> None:
    if model_dir is None:
        if model_id is None:
            raise typer.BadParameter("give --model-dir or --model-id")
        from huggingface_hub import snapshot_download

        model_dir = snapshot_download(model_id, revision=revision)
    uvicorn.run(build_app(model_dir, task), host=host, port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    typer.run(serve)
