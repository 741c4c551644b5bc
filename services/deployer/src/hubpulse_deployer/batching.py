"""Dynamic batching: concurrent predict calls to one model server share one forward pass.

`Batcher(predict_batch, executor, max_batch_size=..., max_wait_s=...)`: `await batcher.predict(inputs)` queues the
caller's inputs; one worker task takes queued calls in arrival order, up to `max_batch_size` inputs (a call is
never split; a call larger than the bound runs alone), waits at most `max_wait_s` after the oldest queued call
for the batch to fill, and runs `predict_batch` on the joined inputs in `executor` (one thread: runtimes are not
thread-safe). Each caller gets its own outputs, in its order. Calls that queue while a batch runs go into the
next one without waiting: under load, batches fill by themselves.

If a batch fails, each of its calls is run again alone, so an input the runtime cannot take fails only the call
that sent it. `max_batch_size` 1 is no batching: each call runs as it comes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

PredictBatch = Callable[[Sequence[str]], list[Any]]


class OutputMismatch(RuntimeError):
    """The runtime answered a different number of outputs than it was given inputs."""


@dataclass
class _Call:
    inputs: list[str]
    arrived: float
    future: asyncio.Future[list[Any]] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class Batcher:
    def __init__(
        self, predict_batch: PredictBatch, executor: Executor, *, max_batch_size: int, max_wait_s: float
    ) -> None:
        if max_batch_size < 1 or max_wait_s < 0:
            raise ValueError("max_batch_size must be at least 1 and max_wait_s at least 0")
        self._predict_batch = predict_batch
        self._executor = executor
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self._queue: deque[_Call] = deque()
        self._queued_inputs = 0
        self._arrival = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self.batches = 0  # forward passes run, for /metrics and tests
        self.inputs = 0  # inputs they took: inputs / batches is the batch size achieved

    async def predict(self, inputs: list[str]) -> list[Any]:
        """One output per input, in order; the runtime's exception if this call's inputs make it fail."""
        if self.max_batch_size == 1:
            return await self._run(inputs)
        loop = asyncio.get_running_loop()
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._work(), name="batcher")
        call = _Call(inputs, loop.time())
        self._queue.append(call)
        self._queued_inputs += len(inputs)
        self._arrival.set()
        return await call.future

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        for call in self._queue:
            call.future.cancel()
        self._queue.clear()

    async def _run(self, inputs: list[str]) -> list[Any]:
        outputs = await asyncio.get_running_loop().run_in_executor(self._executor, self._predict_batch, inputs)
        self.batches += 1
        self.inputs += len(inputs)
        if len(outputs) != len(inputs):
            raise OutputMismatch(f"the runtime gave {len(outputs)} outputs for {len(inputs)} inputs")
        return outputs

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                self._arrival.clear()
                await self._arrival.wait()
                continue
            deadline = self._queue[0].arrived + self.max_wait_s
            while self._queued_inputs < self.max_batch_size and (left := deadline - loop.time()) > 0:
                self._arrival.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._arrival.wait(), left)
            await self._execute(self._take())

    def _take(self) -> list[_Call]:
        """Queued calls in arrival order, up to max_batch_size inputs; at least one call."""
        batch = [self._queue.popleft()]
        size = len(batch[0].inputs)
        while self._queue and size + len(self._queue[0].inputs) <= self.max_batch_size:
            call = self._queue.popleft()
            batch.append(call)
            size += len(call.inputs)
        self._queued_inputs -= size
        return batch

    async def _execute(self, batch: list[_Call]) -> None:
        live = [call for call in batch if not call.future.done()]  # a caller that went away needs no output
        if not live:
            return
        try:
            outputs = await self._run([x for call in live for x in call.inputs])
        except Exception as exc:
            if len(live) == 1:
                if not live[0].future.done():
                    live[0].future.set_exception(exc)
                return
            # which input broke it is unknown: each call alone, so only the caller that sent it fails
            for call in live:
                await self._execute([call])
            return
        start = 0
        for call in live:
            end = start + len(call.inputs)
            if not call.future.done():
                call.future.set_result(outputs[start:end])
            start = end
