"""Dynamic batching: concurrent predict calls to one model server share one forward pass.

`Batcher(predict_batch, executor, max_batch_size=..., max_wait_s=...)`: `await batcher.predict(inputs)` queues the
caller's inputs; a drain job on `executor` (one thread: runtimes are not thread-safe) takes queued calls in arrival
order, up to `max_batch_size` inputs (a call is never split; a call larger than the bound runs alone), waits at most
`max_wait_s` after the oldest queued call for the batch to fill, and runs `predict_batch` on the joined inputs.
Each caller gets its own outputs, in its order. Calls that queue while a batch runs go into the next one without
waiting: under load, batches fill by themselves.

The drain job keeps taking batches for as long as calls are queued and ends when none are: one job per busy
period, not one per batch, and a batch's outputs go back to the event loop in one callback. So a pass under load
costs no thread wake-up to start, and the loop runs no task of the batcher's (docs/decisions/deployer.md).

If a batch fails, each of its calls is run again alone, so an input the runtime cannot take fails only the call
that sent it. `max_batch_size` 1 is no batching: each call runs as it comes, in a pass of its own.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from hubpulse_common.inference import Input

PredictBatch = Callable[[Sequence[Input]], list[Any]]


class OutputMismatch(RuntimeError):
    """The runtime answered a different number of outputs than it was given inputs."""


class BatcherClosed(RuntimeError):
    """The model server is shutting down: it takes no more calls."""


@dataclass(slots=True)
class _Call:
    inputs: list[Input]
    arrived: float  # time.monotonic(): read on the drain thread
    future: asyncio.Future[list[Any]]


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
        # guards the queue, `_draining` and `_waiting` between the loop and the drain thread
        self._lock = threading.Condition(threading.Lock())
        self._draining = False  # a drain job is submitted and has not ended
        self._waiting = False  # the drain job waits for a batch to fill (max_wait_s): arrivals wake it
        self._closed = False
        self.batches = 0  # forward passes run, for /metrics and tests
        self.inputs = 0  # inputs they took: inputs / batches is the batch size achieved

    async def predict(self, inputs: list[Input]) -> list[Any]:
        """One output per input, in order; the runtime's exception if this call's inputs make it fail."""
        return await self.submit(inputs)

    def submit(self, inputs: list[Input]) -> asyncio.Future[list[Any]]:
        """`predict` as a future (on the running loop), for a caller that answers from a callback rather than a
        task. Cancelling it drops the call if it has not run yet. Raises BatcherClosed."""
        loop = asyncio.get_running_loop()
        call = _Call(inputs, time.monotonic(), loop.create_future())
        with self._lock:
            if self._closed:
                raise BatcherClosed("the model server is shutting down")
            self._queue.append(call)
            self._queued_inputs += len(inputs)
            if not self._draining:
                self._draining = True
                self._executor.submit(self._drain, loop)
            elif self._waiting:
                self._lock.notify()
        return call.future

    async def close(self) -> None:
        """Takes no more calls; the calls still queued fail with BatcherClosed (another replica can answer them)."""
        with self._lock:
            self._closed = True
            calls = list(self._queue)
            self._queue.clear()
            self._queued_inputs = 0
            self._lock.notify()
        for call in calls:
            _fail(call.future, BatcherClosed("the model server shut down before this call ran"))

    def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        """On the runtime thread: batches until the queue is empty."""
        try:
            while (batch := self._take()) is not None:
                live = [call for call in batch if not call.future.done()]  # a caller that went away needs no output
                if live:
                    self._execute(loop, live)
        except BaseException:  # the loop closed under it: the next call starts a new drain
            with self._lock:
                self._draining = False
            raise

    def _take(self) -> list[_Call] | None:
        """Queued calls in arrival order, up to max_batch_size inputs, after at most max_wait_s for the batch to
        fill; None (and the drain ends) when none are queued."""
        with self._lock:
            if self.max_wait_s > 0 and self._queue:
                deadline = self._queue[0].arrived + self.max_wait_s
                while self._queued_inputs < self.max_batch_size and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._waiting = True
                    self._lock.wait(left)
                    self._waiting = False
            if not self._queue:
                self._draining = False
                return None
            batch = [self._queue.popleft()]
            size = len(batch[0].inputs)
            while self._queue and size + len(self._queue[0].inputs) <= self.max_batch_size:
                call = self._queue.popleft()
                batch.append(call)
                size += len(call.inputs)
            self._queued_inputs -= size
            return batch

    def _execute(self, loop: asyncio.AbstractEventLoop, live: list[_Call]) -> None:
        try:
            outputs = self._run([x for call in live for x in call.inputs])
        except Exception as exc:
            if len(live) == 1:
                loop.call_soon_threadsafe(_fail, live[0].future, exc)
                return
            # which input broke it is unknown: each call alone, so only the caller that sent it fails
            for call in live:
                self._execute(loop, [call])
            return
        loop.call_soon_threadsafe(_deliver, live, outputs)

    def _run(self, inputs: list[Input]) -> list[Any]:
        outputs = self._predict_batch(inputs)
        self.batches += 1
        self.inputs += len(inputs)
        if len(outputs) != len(inputs):
            raise OutputMismatch(f"the runtime gave {len(outputs)} outputs for {len(inputs)} inputs")
        return outputs


def _deliver(live: list[_Call], outputs: list[Any]) -> None:
    """On the loop: each call its slice of the batch's outputs."""
    start = 0
    for call in live:
        end = start + len(call.inputs)
        if not call.future.done():
            call.future.set_result(outputs[start:end])
        start = end


def _fail(future: asyncio.Future[list[Any]], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
