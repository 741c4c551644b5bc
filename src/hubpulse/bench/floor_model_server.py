"""The floor of a batching model server, for `hubpulse bench inference`: what any design can reach on this machine.

The model server's runtime, token check, JSON and input validation behind an `asyncio.Protocol` with httptools'
parser on uvloop: no ASGI cycle, no runtime thread (each pass runs inline on the event loop, so an unbatched call
pays no hand-off), and a batch is every call whose body completed in one loop iteration, at most
`--max-batch-size` inputs. Against the model server it measures what the ASGI cycle and the runtime thread cost,
and, unbatched against batched, how much of a call a batch can share at all on these cores (a pass's fixed part;
the tokenizer, HTTP and JSON stay per call). A reference, not a server to deploy: no request limits, the loop
blocks during a pass, keep-alive HTTP/1.1 only (answers leave in request order, so pipelining holds).

    python -m hubpulse.bench.floor_model_server --model-dir DIR --task TASK --port PORT --max-batch-size N

`POST /predict` and `GET /healthz` (its `batching` counts, as the model server's) answer as the model server does.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import httptools
import typer
import uvloop

from hubpulse_common.inference import MODEL_SERVER_TOKEN_VARIABLE
from hubpulse_deployer.model_server import CallRefused, admitted_inputs, error_body, expected_authorization, json_body
from hubpulse_deployer.runtime import Runtime, load


@dataclass
class _Call:
    """One request in arrival order: its inputs to run, /healthz, or its answer already known (an error)."""

    connection: _Connection
    inputs: list[str] | None = None
    health: bool = False  # answered when its turn comes: the counts include the passes before it
    status: int = 200
    body: bytes = b""


class FloorServer:
    def __init__(self, runtime: Runtime, max_batch_size: int, token: str | None) -> None:
        self.runtime = runtime
        self.max_batch_size = max_batch_size
        self.expected = expected_authorization(token)
        self.queue: list[_Call] = []
        self.batches = 0
        self.inputs = 0
        self._scheduled = False

    def submit(self, call: _Call) -> None:
        self.queue.append(call)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        calls, self.queue = self.queue, []
        batch: list[_Call] = []
        size = 0
        for call in calls:
            if call.inputs is not None and batch and size + len(call.inputs) > self.max_batch_size:
                self._run(batch)
                batch, size = [], 0
            batch.append(call)
            size += len(call.inputs or ())
        self._run(batch)

    def _run(self, batch: list[_Call]) -> None:
        inputs = [text for call in batch for text in call.inputs or ()]
        refused = b""
        try:
            outputs = self.runtime.predict_batch(inputs) if inputs else []
        except Exception as exc:  # the reference does not retry call by call: all of the batch is refused
            outputs = None
            refused = error_body("bad_input", f"the model cannot take these inputs: {exc}")
        if inputs:
            self.batches += 1
            self.inputs += len(inputs)
        start = 0
        for call in batch:
            if call.inputs is not None:
                count = len(call.inputs)
                if outputs is None:
                    call.status, call.body = 422, refused
                else:
                    call.body = json_body({"outputs": outputs[start : start + count]})
                start += count
            elif call.health:
                call.body = self.health()
            call.connection.answer(call.status, call.body)

    def health(self) -> bytes:
        batching = {"max_batch_size": self.max_batch_size, "batches": self.batches, "inputs": self.inputs}
        return json_body({"status": "ok", "task": self.runtime.task, "batching": batching})


class _Connection(asyncio.Protocol):
    def __init__(self, server: FloorServer) -> None:
        self.server = server
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.authorization = b""
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio's subclasses

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.answer(400, b'{"detail":"Bad Request"}')
            if self.transport is not None:
                self.transport.close()

    def on_message_begin(self) -> None:
        self.url, self.authorization, self.body = b"", b"", []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"authorization":
            self.authorization = value

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        server, method = self.server, self.parser.get_method()
        call = _Call(self)
        if self.url == b"/healthz" and method == b"GET":
            call.health = True
        elif self.url != b"/predict" or method != b"POST":
            call.status, call.body = 404, b'{"detail":"Not Found"}'
        else:
            try:
                call.inputs = admitted_inputs(
                    server.expected, self.authorization, server.runtime.task, b"".join(self.body)
                )
            except CallRefused as refused:
                call.status, call.body = refused.status, refused.body
        server.submit(call)  # queued even when answered already: answers leave in request order

    def answer(self, status: int, body: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        head = f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}\r\ncontent-type: application/json\r\n"
        self.transport.write(f"{head}content-length: {len(body)}\r\n\r\n".encode() + body)


async def _serve(server: FloorServer, host: str, port: int) -> None:
    listening = await asyncio.get_running_loop().create_server(lambda: _Connection(server), host, port)
    async with listening:
        await listening.serve_forever()


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
