"""A consumer process for the bus tests: records what it handled in a file, optionally crashes or lingers.

    python bus_worker.py BOOTSTRAP TOPIC GROUP OUTFILE MODE
MODE: crash (die with os._exit before committing), slow (each batch takes 1.5 s), normal.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Sequence

from hubpulse_common.events import ModelSnapshot
from hubpulse_common.kafka import BatchConsumer, EventBus, Received


async def main(bootstrap: str, topic: str, group: str, out: str, mode: str) -> None:
    bus = EventBus(bootstrap, "bus-worker")
    await bus.start()

    async def handle(batch: Sequence[Received[ModelSnapshot]]) -> None:
        if mode == "slow":
            with open(out + ".started", "a") as f:
                f.write("started\n")
            await asyncio.sleep(1.5)
        with open(out, "a") as f:
            for r in batch:
                f.write(f"{r.event.model_id}\n")
        if mode == "crash":
            os._exit(17)  # the effect is written but the offsets are not committed

    consumer = BatchConsumer(
        bootstrap=bootstrap,
        group_id=group,
        topic=topic,
        event_type=ModelSnapshot,
        handler=handle,
        bus=bus,
        session_timeout_ms=int(os.environ["HUBPULSE_CONSUMER_SESSION_TIMEOUT_MS"]),
    )
    await consumer.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    with open(out + ".ready", "w") as f:
        f.write("ready")
    await stop.wait()
    await consumer.stop()
    await bus.stop()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:6]))
