"""The floor of a batching model server, for `hubpulse bench inference`: what batching can give on this machine.

The model server's runtime, token check, JSON, input validation and HTTP (`hubpulse_deployer.http_server`), with
no runtime thread: each pass runs inline on the event loop (an unbatched call pays no hand-off), and a batch is
every call whose body completed in one loop iteration, at most `--max-batch-size` inputs. Against the model server
it measures what the runtime thread costs and a batch shares, and, unbatched against batched, how much of a call a
batch can share at all on these cores (a pass's fixed part; the tokenizer, HTTP and JSON stay per call). A
reference, not a server to deploy: the loop blocks during a pass, and a failed batch fails all of its calls.

    python -m hubpulse.bench.floor_model_server --model-dir DIR --task TASK --port PORT --max-batch-size N

`POST /predict` and `GET /healthz` (its `batching` counts, as the model server's; answered after the passes of the
calls before it) answer as the model server does; any other request is a 404.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import typer
import uvloop

from hubpulse_common.inference import MODEL_SERVER_TOKEN_VARIABLE, Input
from hubpulse_deployer.http_server import Answer, HttpServer, Pending, Request, detail
from hubpulse_deployer.model_server import (
    CallRefused,
    admitted_inputs,
    expected_authorization,
    inputs_refused_body,
    json_body,
)
from hubpulse_deployer.runtime import Runtime, load

# a queued call: its inputs (None: /healthz) and the future its answer waits on
_Queued = tuple[list[Input] | None, asyncio.Future[Any]]


class FloorServer:
    def __init__(self, runtime: Runtime, max_batch_size: int, token: str | None) -> None:
        self.runtime = runtime
        self.max_batch_size = max_batch_size
        self.expected = expected_authorization(token)
        self.queue: list[_Queued] = []
        self.batches = 0
        self.inputs = 0
        self._scheduled = False

    def respond(self, request: Request) -> Answer | Pending:
        if request.path == "/healthz" and request.method == b"GET":
            return Pending(self._queue(None), lambda f: Answer(200, f.result()))
        if request.path != "/predict" or request.method != b"POST":
            return detail(404, "Not Found")
        try:
            inputs = admitted_inputs(self.expected, request.authorization, self.runtime.task, request.body)
        except CallRefused as refused:
            return Answer(refused.status, refused.body)
        return Pending(self._queue(inputs), _predicted)

    def _queue(self, inputs: list[Input] | None) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.queue.append((inputs, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._scheduled = False
        calls, self.queue = self.queue, []
        batch: list[_Queued] = []
        size = 0
        for inputs, future in calls:
            if inputs is None:  # /healthz: after the passes of the calls before it
                self._run(batch)
                batch, size = [], 0
                if not future.done():
                    future.set_result(self.health())
                continue
            if batch and size + len(inputs) > self.max_batch_size:
                self._run(batch)
                batch, size = [], 0
            batch.append((inputs, future))
            size += len(inputs)
        self._run(batch)

    def _run(self, batch: list[_Queued]) -> None:
        inputs = [text for texts, _ in batch for text in texts or ()]
        if not inputs:
            return
        try:
            outputs = self.runtime.predict_batch(inputs)
        except Exception as exc:  # the reference does not retry call by call: all of the batch is refused
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        self.batches += 1
        self.inputs += len(inputs)
        start = 0
        for texts, future in batch:
            end = start + len(texts or ())
            if not future.done():
                future.set_result(outputs[start:end])
            start = end

    def health(self) -> bytes:
        batching = {"max_batch_size": self.max_batch_size, "batches": self.batches, "inputs": self.inputs}
        return json_body({"status": "ok", "task": self.runtime.task, "batching": batching})


def _predicted(future: asyncio.Future[list[Any]]) -> Answer:
    if future.cancelled():
        return Answer(499, b"")
    exc = future.exception()
    if exc is not None:
        return Answer(422, inputs_refused_body(exc))
    return Answer(200, json_body({"outputs": future.result()}))


async def _serve(server: FloorServer, host: str, port: int) -> None:
    http = HttpServer(server.respond)
    await http.start(host, port)
    await asyncio.Event().wait()  # until the process is stopped


def main(
    model_dir: Path = typer.Option(..., exists=True, file_okay=False),
    task: str = typer.Option("text-classification"),
    port: int = typer.Option(...),
    host: str = "127.0.0.1",
    max_batch_size: int = typer.Option(1, min=1),
) -> None:
    server = FloorServer(load(model_dir, task), max_batch_size, os.environ.get(MODEL_SERVER_TOKEN_VARIABLE) or None)
    uvloop.run(_serve(server, host, port))  # the port is bound once the model is loaded, as the model server's


if __name__ == "__main__":
    typer.run(main)
