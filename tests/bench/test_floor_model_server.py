"""The bench's floor model server answers as the model server does: a reference that answered differently (or
wrongly, to its callers) would measure something else."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from hubpulse.bench.loadgen import post_json
from hubpulse.hub.demo_models import DemoRepos
from hubpulse.platform.stores import free_port, wait_port
from hubpulse_common.inference import MODEL_SERVER_TOKEN_VARIABLE
from hubpulse_deployer.runtime import load

MODEL = "hubpulse-demo/tiny-text-classifier"
TOKEN = "0123456789abcdef"
AUTH = {"authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    built = DemoRepos(tmp_path_factory.mktemp("demo-models")).get(MODEL)
    assert built is not None
    return built.root


@pytest.fixture(scope="module")
def server(model_dir: Path) -> Iterator[int]:
    port = free_port()
    argv = [sys.executable, "-m", "hubpulse.bench.floor_model_server", "--model-dir", str(model_dir)]
    env = {**os.environ, MODEL_SERVER_TOKEN_VARIABLE: TOKEN}
    proc = subprocess.Popen([*argv, "--port", str(port), "--max-batch-size", "4"], env=env)
    try:
        assert wait_port(port, 120, proc)
        yield port
    finally:
        proc.terminate()
        proc.wait(30)


async def _exchange(port: int, requests: list[bytes]) -> list[tuple[int, bytes]]:
    """Every request written at once on one connection (pipelined); the answers as they come, in order."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"".join(requests))
    answers = []
    for _ in requests:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        length = next(int(line.split(":")[1]) for line in lines if line.lower().startswith("content-length"))
        answers.append((int(lines[0].split()[1]), await reader.readexactly(length)))
    writer.close()
    return answers


def _predict(inputs: object, headers: dict[str, str] = AUTH) -> bytes:
    return post_json("/predict", orjson.dumps({"inputs": inputs}), headers)


def _alone(model_dir: Path, texts: list[str]) -> list[Any]:
    """Each text's output from a pass of its own."""
    runtime = load(model_dir, "text-classification")
    return [runtime.predict_batch([text])[0] for text in texts]


def _assert_same(got: list[Any], expected: list[Any]) -> None:
    """The same labels; scores equal but for float rounding (a batch pads its inputs to the longest)."""
    assert [o["label"] for o in got] == [e["label"] for e in expected]
    assert [o["score"] for o in got] == pytest.approx([e["score"] for e in expected], abs=1e-5)


async def test_answers_in_order_with_the_model_servers_statuses(server: int, model_dir: Path) -> None:
    texts = [f"call {i}: the movie was {'good' if i % 2 else 'awful'}" for i in range(10)]
    requests = [
        _predict([texts[0]]),
        _predict(["x"], {"authorization": "Bearer wrong"}),
        _predict([texts[1], texts[2]]),
        _predict([1]),
        post_json("/predict", b"not json", AUTH),
        b"GET /nowhere HTTP/1.1\r\nHost: t\r\n\r\n",
        *[_predict([t]) for t in texts[3:]],  # more inputs than one batch takes: split over passes
        b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n",
    ]
    answers = await _exchange(server, requests)
    assert [status for status, _ in answers] == [200, 401, 200, 422, 422, 404, *[200] * 7, 200]
    got = [output for i in (0, 2, *range(6, 13)) for output in orjson.loads(answers[i][1])["outputs"]]
    _assert_same(got, _alone(model_dir, texts))
    assert orjson.loads(answers[1][1])["error"]["code"] == "unauthorized"
    assert orjson.loads(answers[3][1])["error"]["code"] == "bad_input"
    batching = orjson.loads(answers[-1][1])["batching"]
    assert batching["max_batch_size"] == 4
    assert batching["inputs"] == len(texts)  # the passes before it in the connection's order
    assert 3 <= batching["batches"] < len(texts)


async def test_concurrent_callers_each_get_their_own_output_from_shared_passes(server: int, model_dir: Path) -> None:
    texts = [f"caller {i}: the food was {'fine' if i % 3 else 'bad'}" for i in range(48)]

    async def health() -> dict[str, int]:
        ((_, body),) = await _exchange(server, [b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"])
        batching: dict[str, int] = orjson.loads(body)["batching"]
        return batching

    before = await health()
    # 8 callers at once, each with 6 calls in flight on its connection
    answers = await asyncio.gather(
        *(_exchange(server, [_predict([t]) for t in texts[i : i + 6]]) for i in range(0, 48, 6))
    )
    after = await health()
    outputs = [orjson.loads(body)["outputs"] for caller in answers for _, body in caller]
    assert all(len(o) == 1 for o in outputs)
    _assert_same([o[0] for o in outputs], _alone(model_dir, texts))
    assert after["inputs"] - before["inputs"] == len(texts)
    assert after["batches"] - before["batches"] < len(texts)  # some calls shared a pass
