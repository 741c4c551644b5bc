"""`hubpulse dlq list|replay TOPIC`: inspect dead letters, and re-feed them to their topic once the cause is fixed.

Only poison reaches a DLQ (the bus waits out outages, `hubpulse_common.transient.is_transient`). Replaying is safe
to repeat: every consumer upserts by natural key, so a message handled twice changes nothing. A replayed
message that is still poison goes back to the DLQ, with a new failure time (`--since` skips the old ones).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Column, Table

from hubpulse.commands.options import output_file
from hubpulse_common.errors import ConfigError, InputError

if TYPE_CHECKING:
    from aiokafka.structs import ConsumerRecord

console = Console(stderr=True)

REPLAYED_HEADER = "x-replayed-from"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One record of a `<topic>.dlq` topic and what the consumer that gave up on it wrote in its headers."""

    partition: int
    offset: int
    failed_at: datetime
    key: str | None
    error_type: str
    error: str
    original_topic: str
    original_partition: int | None
    original_offset: int | None
    consumer_group: str | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]

    def summary(self) -> dict[str, object]:
        """The JSON form (`--json`): everything but the raw value and headers."""
        out = asdict(self)
        del out["value"], out["headers"]
        out["failed_at"] = self.failed_at.isoformat()
        return out


def _dlq_name(topic: str) -> tuple[str, str]:
    """(original topic, DLQ topic) from either name."""
    from hubpulse_common.events import dlq_topic

    original = topic.removesuffix(".dlq")
    return original, dlq_topic(original)


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an ISO 8601 date or time (e.g. 2026-12-04T20:00:00Z)") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _as_int(value: str | None) -> int | None:
    return int(value) if value is not None and value.lstrip("-").isdigit() else None


def _dead_letter(record: ConsumerRecord[bytes, bytes]) -> DeadLetter:
    headers = tuple((k, bytes(v)) for k, v in record.headers or ())
    text = {k: v.decode(errors="replace") for k, v in headers}
    try:
        failed_at = datetime.fromisoformat(text["x-failed-at"])
    except (KeyError, ValueError):  # written by something else than the bus: the broker's timestamp
        failed_at = datetime.fromtimestamp(record.timestamp / 1000, UTC)
    return DeadLetter(
        partition=record.partition,
        offset=record.offset,
        failed_at=failed_at,
        key=record.key.decode(errors="replace") if record.key is not None else None,
        error_type=text.get("x-error-type", "?"),
        error=text.get("x-error", ""),
        original_topic=text.get("x-original-topic", record.topic.removesuffix(".dlq")),
        original_partition=_as_int(text.get("x-original-partition")),
        original_offset=_as_int(text.get("x-original-offset")),
        consumer_group=text.get("x-consumer-group"),
        value=record.value or b"",
        headers=headers,
    )


async def read_dead_letters(bootstrap: str, topic: str, since: datetime | None = None) -> list[DeadLetter]:
    """Every record of TOPIC's DLQ (from its start to its end now) that failed at or after `since`.

    Reads with no consumer group: listing or replaying moves no committed offset of anyone."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.errors import KafkaConnectionError

    _, dlq = _dlq_name(topic)
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, request_timeout_ms=10_000)
    try:
        await reader.start()
    except KafkaConnectionError as exc:
        raise ConfigError(f"HUBPULSE_KAFKA_BOOTSTRAP={bootstrap}: cannot reach the broker ({exc})") from None
    try:
        if dlq not in await reader.topics():
            raise InputError(f"there is no topic {dlq} on the broker (dead letters of {topic} would be there)")
        partitions = [TopicPartition(dlq, p) for p in sorted(reader.partitions_for_topic(dlq) or ())]
        reader.assign(partitions)
        await reader.seek_to_beginning(*partitions)
        ends = await reader.end_offsets(partitions)
        letters: list[DeadLetter] = []
        remaining = {tp for tp in partitions if ends[tp] > await reader.position(tp)}
        while remaining:
            for tp, records in (await reader.getmany(*remaining, timeout_ms=1000)).items():
                letters.extend(_dead_letter(r) for r in records if r.offset < ends[tp])
                if await reader.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await reader.stop()
    letters.sort(key=lambda d: (d.failed_at, d.partition, d.offset))
    return [d for d in letters if since is None or d.failed_at >= since]


async def replay_dead_letters(bootstrap: str, letters: list[DeadLetter]) -> int:
    """Publish each dead letter's value and key to its original topic; returns how many the broker took.

    Headers other than the bus's failure ones (trace id, schema version) travel along, plus where it came from."""
    from hubpulse_common.kafka import DEAD_LETTER_HEADERS, EventBus

    bus = EventBus(bootstrap, client_id="hubpulse-dlq-replay")
    await bus.start()
    try:
        for d in letters:
            headers = [(k, v) for k, v in d.headers if k not in DEAD_LETTER_HEADERS and k != REPLAYED_HEADER]
            headers.append((REPLAYED_HEADER, f"{d.original_topic}.dlq:{d.partition}:{d.offset}".encode()))
            key = d.key.encode() if d.key is not None else None
            await bus.publish_raw(d.original_topic, d.value, key=key, headers=headers)
    finally:
        await bus.stop()
    return len(letters)


def _bootstrap() -> str:
    from hubpulse_common.settings import CommonSettings, load_settings

    return load_settings(CommonSettings).kafka_bootstrap


TopicArg = Annotated[str, typer.Argument(help="the topic (hub.snapshots.v2) or its DLQ (hub.snapshots.v2.dlq)")]
SinceOpt = Annotated[
    str | None, typer.Option("--since", help="only dead letters that failed at or after this ISO time (UTC if no zone)")
]


def dlq_list(
    topic: TopicArg,
    since: SinceOpt = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="also write the list as JSON here", callback=output_file)
    ] = None,
) -> None:
    """Dead letters of TOPIC, oldest first: where they sit, when and why they failed, where they came from."""
    letters = asyncio.run(read_dead_letters(_bootstrap(), topic, _since(since)))
    table = Table(
        Column("partition:offset", no_wrap=True),
        Column("failed at", no_wrap=True),
        "key",
        "error",
        Column("from topic:partition:offset", no_wrap=True),
        "group",
        title=f"{_dlq_name(topic)[1]}: {len(letters)} dead letter(s)",
    )
    for d in letters:
        table.add_row(
            f"{d.partition}:{d.offset}",
            d.failed_at.isoformat(timespec="seconds"),
            d.key or "",
            f"{d.error_type}: {d.error[:200]}",
            f"{d.original_topic}:{d.original_partition}:{d.original_offset}",
            d.consumer_group or "",
        )
    Console().print(table)
    if json_out is not None:
        json_out.write_text(json.dumps([d.summary() for d in letters], indent=2) + "\n")
        console.print(f"list: {json_out}")


def dlq_replay(
    topic: TopicArg,
    since: SinceOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="say what would be replayed, publish nothing")] = False,
) -> None:
    """Re-feed TOPIC's dead letters to their original topic (safe to repeat: consumers upsert by natural key)."""
    bootstrap = _bootstrap()
    letters = asyncio.run(read_dead_letters(bootstrap, topic, _since(since)))
    targets = sorted({d.original_topic for d in letters})
    if dry_run:
        console.print(f"would replay {len(letters)} dead letter(s) to {', '.join(targets) or '-'} (dry run)")
        return
    replayed = asyncio.run(replay_dead_letters(bootstrap, letters))
    console.print(f"replayed {replayed} dead letter(s) to {', '.join(targets) or '-'}")


def register(app: typer.Typer) -> None:
    dlq = typer.Typer(name="dlq", help="Dead-letter topics: list and replay.", no_args_is_help=True)
    dlq.command("list")(dlq_list)
    dlq.command("replay")(dlq_replay)
    app.add_typer(dlq)
