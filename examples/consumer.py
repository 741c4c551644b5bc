"""A minimal consumer of hubpulse's trend scores (`hub.scores.v2`), for integrators.

    pip install aiokafka
    python examples/consumer.py --bootstrap 127.0.0.1:9092 --group my-app --threshold 0.45

It prints each model whose trend probability reaches the threshold. What it shows about the contract
(docs/asyncapi.yaml):
- values are JSON, many scores a message, column by column (row `i` is `model_id[i]`, `probability[i]`,
  `top_features[i]`; the day, version, label and threshold are the message's); each model's scores stay on
  one partition, so they arrive in order;
- delivery is at least once: a score can arrive twice, so deduplicate on its natural key
  (model_id, snapshot_date, model_version) or make your effect idempotent;
- commit only after your effect is done, so a crash re-reads rather than skips;
- ignore fields you do not know: `v2` only ever gains fields.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer

TOPIC = "hub.scores.v2"


@dataclass(frozen=True)
class Score:
    model_id: str
    snapshot_date: str
    model_version: str
    label: str
    probability: float
    threshold: float

    @classmethod
    def from_value(cls, value: bytes) -> list[Score]:
        """The scores of one message."""
        data: dict[str, Any] = json.loads(value)
        rows = zip(data["model_id"], data["probability"], strict=True)
        shared = {name: data[name] for name in ("snapshot_date", "model_version", "label", "threshold")}
        return [cls(model_id=model_id, probability=probability, **shared) for model_id, probability in rows]

    @property
    def natural_key(self) -> tuple[str, str, str]:
        return (self.model_id, self.snapshot_date, self.model_version)


async def consume(
    bootstrap: str,
    group: str,
    on_score: Callable[[Score], Awaitable[None]],
    *,
    stop: asyncio.Event | None = None,
    **consumer_options: Any,
) -> None:
    """Feed every score to `on_score`, once per natural key in this process, committing after each batch.

    `consumer_options` go to `AIOKafkaConsumer` as they are: your cluster's security settings
    (`security_protocol`, `sasl_mechanism`, ...) or timeouts (`session_timeout_ms`, ...).
    """
    consumer = AIOKafkaConsumer(
        TOPIC,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **consumer_options,
    )
    await consumer.start()
    seen: set[tuple[str, str, str]] = set()  # a real app keeps this in its own store, or upserts by the key
    try:
        while stop is None or not stop.is_set():
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    if record.value is None:
                        continue
                    for score in Score.from_value(record.value):
                        if score.natural_key not in seen:
                            seen.add(score.natural_key)
                            await on_score(score)
            if batches:
                await consumer.commit()
    finally:
        await consumer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--group", default="hubpulse-example-consumer")
    parser.add_argument("--threshold", type=float, default=0.45)
    args = parser.parse_args()

    async def show(score: Score) -> None:
        if score.probability >= args.threshold:
            print(f"{score.snapshot_date} {score.model_id}: {score.probability:.0%} chance of {score.label}")

    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: stop quietly; uncommitted scores are read again
        asyncio.run(consume(args.bootstrap, args.group, show))


if __name__ == "__main__":
    main()
