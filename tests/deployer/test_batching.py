"""Dynamic batching (`hubpulse_deployer.batching`): concurrent calls share forward passes, each caller gets its
own outputs in order, and an input that breaks a batch fails only the caller that sent it. Then the same through
a real model server process running the demo text classifier on ONNX Runtime."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from deployer.conftest import DEMO_CACHE, model_client
from hubpulse.hub.demo_models import DemoRepos
from hubpulse.platform.stores import free_port, wait_port
from hubpulse_deployer.batching import Batcher
from hubpulse_deployer.model_server import ModelServer
from hubpulse_deployer.runtime import load

MODEL = "hubpulse-demo/tiny-text-classifier"


class Recorder:
    """A batch function that records the batches it was given; it refuses the input "boom" (as a runtime
    refuses an input it cannot take) and answers each input with its own text reversed."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def __call__(self, inputs: Sequence[str]) -> list[Any]:
        self.batches.append(list(inputs))
        if "boom" in inputs:
            raise ValueError("cannot take 'boom'")
        return [text[::-1] for text in inputs]


@pytest.fixture
async def executor() -> AsyncIterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=1)
    yield pool
    pool.shutdown()


async def test_concurrent_callers_share_batches_and_get_their_own_outputs(executor: ThreadPoolExecutor) -> None:
    recorder = Recorder()
    batcher = Batcher(recorder, executor, max_batch_size=8, max_wait_s=0.05)
    calls = [[f"call {i} input {j}" for j in range(1 + i % 3)] for i in range(24)]
    try:
        answers = await asyncio.gather(*(batcher.predict(inputs) for inputs in calls))
    finally:
        await batcher.close()
    assert answers == [[text[::-1] for text in inputs] for inputs in calls]
    assert len(recorder.batches) < len(calls)  # forward passes were shared
    assert max(len(b) for b in recorder.batches) <= 8
    # arrival order is kept: the batches, joined, are the calls' inputs in the order they were made
    assert [x for b in recorder.batches for x in b] == [x for inputs in calls for x in inputs]


async def test_a_bad_input_fails_only_its_caller(executor: ThreadPoolExecutor) -> None:
    recorder = Recorder()
    batcher = Batcher(recorder, executor, max_batch_size=16, max_wait_s=0.05)
    calls = [["fine 1"], ["fine 2", "boom"], ["fine 3"], ["fine 4", "fine 5"]]
    try:
        answers = await asyncio.gather(*(batcher.predict(inputs) for inputs in calls), return_exceptions=True)
    finally:
        await batcher.close()
    assert answers[0] == ["1 enif"]
    assert isinstance(answers[1], ValueError)
    assert answers[2] == ["3 enif"]
    assert answers[3] == ["4 enif", "5 enif"]
    assert recorder.batches[0] == ["fine 1", "fine 2", "boom", "fine 3", "fine 4", "fine 5"]  # one batch first


async def test_a_call_larger_than_the_bound_runs_alone_and_the_wait_is_bounded(executor: ThreadPoolExecutor) -> None:
    recorder = Recorder()
    batcher = Batcher(recorder, executor, max_batch_size=4, max_wait_s=0.2)
    try:
        big = await batcher.predict([f"x{i}" for i in range(6)])
        # alone, a call waits for company at most max_wait_s, then runs
        started = asyncio.get_running_loop().time()
        alone = await batcher.predict(["solo"])
        waited = asyncio.get_running_loop().time() - started
    finally:
        await batcher.close()
    assert big == [f"{i}x" for i in range(6)]
    assert alone == ["olos"]
    assert recorder.batches == [[f"x{i}" for i in range(6)], ["solo"]]
    assert waited < 5  # bounded (0.2 s asked; generous for a loaded machine)


async def test_batch_size_one_runs_each_call_alone(executor: ThreadPoolExecutor) -> None:
    recorder = Recorder()
    batcher = Batcher(recorder, executor, max_batch_size=1, max_wait_s=0.05)
    answers = await asyncio.gather(*(batcher.predict([f"c{i}"]) for i in range(5)))
    await batcher.close()
    assert answers == [[f"{i}c"] for i in range(5)]
    assert sorted(map(tuple, recorder.batches)) == [(f"c{i}",) for i in range(5)]


async def test_a_call_to_a_closing_model_server_gets_a_503_not_a_422(demo_model_dir: Path) -> None:
    server = ModelServer(load(demo_model_dir, "text-classification"), max_batch_size=8, max_wait_ms=1, token=None)
    async with model_client(server) as client:
        assert (await client.post("/predict", json={"inputs": ["fine"]})).status_code == 200
        await server.batcher.close()  # as the server's shutdown does
        late = await client.post("/predict", json={"inputs": ["fine"]})
        metrics = (await client.get("/metrics")).text
    assert (late.status_code, late.json()["error"]["code"]) == (503, "shutting_down")
    assert 'hubpulse_model_server_calls_total{status="503"} 1.0' in metrics


@pytest.fixture(scope="module")
def demo_model_dir() -> Path:
    built = DemoRepos(DEMO_CACHE).get(MODEL)
    assert built is not None
    return built.root


async def test_model_server_batches_concurrent_calls(demo_model_dir: Path, tmp_path: Path) -> None:
    texts = [f"call {i}: the movie was {'good' if i % 2 else 'awful'}" for i in range(32)]
    alone = load(demo_model_dir, "text-classification").predict_batch(texts)
    port = free_port()
    log = (tmp_path / "server.log").open("wb")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hubpulse_deployer.model_server",
            "--model-dir",
            str(demo_model_dir),
            "--task",
            "text-classification",
            "--port",
            str(port),
            "--max-batch-size",
            "8",
            "--max-wait-ms",
            "20",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        assert await asyncio.to_thread(wait_port, port, 120, server)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            answers = await asyncio.gather(*(client.post("/predict", json={"inputs": [t]}) for t in texts))
            bad = await client.post("/predict", json={"inputs": [""]})
            health = (await client.get("/healthz")).json()
    finally:
        stopped = time.monotonic()
        server.terminate()
        exit_code = server.wait(20)
        stopped = time.monotonic() - stopped
        log.close()
    # SIGTERM: it answers what it owes and exits cleanly, well within the local target's 10 s before a kill
    assert (exit_code, stopped < 10) == (0, True), (tmp_path / "server.log").read_text()[-2000:]
    for text, answer, expected in zip(texts, answers, alone, strict=True):
        assert answer.status_code == 200, answer.text
        (output,) = answer.json()["outputs"]
        assert output["label"] == expected["label"], text
        assert output["score"] == pytest.approx(expected["score"], abs=1e-5)
    assert bad.status_code == 422
    assert health["batching"]["max_batch_size"] == 8
    assert health["batching"]["batches"] < len(texts)  # forward passes were shared
    assert health["batching"]["inputs"] == len(texts)  # each text ran once ("" was refused before the model)


class CountingExecutor(ThreadPoolExecutor):
    """One runtime thread that counts the jobs it was given."""

    def __init__(self) -> None:
        super().__init__(max_workers=1)
        self.jobs = 0

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        self.jobs += 1
        return super().submit(fn, *args, **kwargs)


class Slow(Recorder):
    """A pass that takes a while, so that calls queue behind it."""

    def __call__(self, inputs: Sequence[str]) -> list[Any]:
        time.sleep(0.005)
        return super().__call__(inputs)


@pytest.mark.parametrize("max_batch_size", [1, 4])
async def test_a_busy_period_hands_the_runtime_thread_one_job_and_the_loop_runs_no_batcher_task(
    max_batch_size: int,
) -> None:
    """The passes of calls that queue while one runs start on the runtime thread without a hand-off from the
    event loop each (a thread wake-up a pass is what made a call dear), and no task is created per call or batch."""
    recorder, executor = Slow(), CountingExecutor()
    batcher = Batcher(recorder, executor, max_batch_size=max_batch_size, max_wait_s=0)
    loop = asyncio.get_running_loop()
    created = 0
    default_factory = loop.get_task_factory()

    def counting_factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        nonlocal created
        created += 1
        return default_factory(loop, coro, **kwargs) if default_factory else asyncio.Task(coro, loop=loop, **kwargs)

    calls = [[f"c{i}"] for i in range(16)]
    try:
        loop.set_task_factory(counting_factory)
        tasks_before = created
        answers = await asyncio.gather(*(batcher.predict(inputs) for inputs in calls))
        tasks = created - tasks_before - len(calls)  # gather wraps each call in a task of its own
    finally:
        loop.set_task_factory(default_factory)
        await batcher.close()
        executor.shutdown()
    assert answers == [[text[::-1] for text in inputs] for inputs in calls]
    assert max(len(b) for b in recorder.batches) <= max_batch_size
    assert [x for b in recorder.batches for x in b] == [x for inputs in calls for x in inputs]
    assert executor.jobs == 1  # one drain for the busy period, however many passes it ran
    assert tasks == 0


async def test_a_call_after_a_quiet_period_starts_a_new_drain() -> None:
    recorder, executor = Recorder(), CountingExecutor()
    batcher = Batcher(recorder, executor, max_batch_size=8, max_wait_s=0)
    try:
        first = await batcher.predict(["a"])
        await asyncio.sleep(0.05)  # the drain saw an empty queue and ended
        second = await batcher.predict(["b"])
    finally:
        await batcher.close()
        executor.shutdown()
    assert (first, second) == (["a"], ["b"])
    assert executor.jobs == 2
