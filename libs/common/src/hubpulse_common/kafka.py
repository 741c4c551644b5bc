"""A thin, typed layer over aiokafka: publish events, consume them in batches at least once.

Delivery contract of `BatchConsumer`:
- A batch's offsets are committed only after the handler returned, i.e. after its effect is durable.
  A crash before that redelivers the batch, so handlers must be idempotent (upserts on natural keys).
- A value that does not parse as the topic's event is poison: it goes to `<topic>.dlq` at once.
- A handler failure that `is_transient` (a store or the broker unreachable, a timeout, a serialization
  failure or deadlock) is retried without bound, with capped backoff: nothing is committed, the lag grows,
  and the consumer's readiness check is down until the handler succeeds again. A stop or a rebalance
  meanwhile abandons the batch uncommitted (the next owner of its partitions redelivers it).
- Any other failure is deterministic: after bounded retries the batch is split into single messages; those
  that still fail go to `<topic>.dlq` with the error attached, and the stream goes on. Only poison lands in a
  DLQ; `hubpulse dlq list|replay` inspects it and re-feeds it to its topic once the cause is fixed.
- A group with committed offsets resumes from them. A new group starts at the earliest offset, or, with
  `start_at="latest"` (consumers about what happens from now on, e.g. watches), at the latest offset as of
  `start()`, committed then, so nothing published after `start()` returns is skipped.
- `stop()` (wired to SIGTERM through the service lifespan) finishes the batch in hand, commits, leaves.
- On rebalance, revocation waits for the batch in hand to finish and commit (no double work on handover).
- The loop runs as a `Supervised` task: were it ever to raise, it restarts, and `/readyz` says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, Literal, TypeVar

import numpy as np
import numpy.typing as npt
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    IllegalStateError,
    KafkaConnectionError,
    KafkaError,
    TopicAlreadyExistsError,
)
from aiokafka.helpers import create_ssl_context
from aiokafka.partitioner import DefaultPartitioner, murmur2
from aiokafka.structs import ConsumerRecord
from prometheus_client import Counter, Gauge, Histogram
from pydantic import ValidationError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential

from hubpulse_common.errors import ConfigError
from hubpulse_common.events import ALL_EVENTS, ALL_TOPICS, SCHEMA_VERSION_HEADER, Event, dlq_topic
from hubpulse_common.logging import TRACE_HEADER, current_trace_id, get_logger, trace_id_var
from hubpulse_common.settings import ConsumerSettings, KafkaSecuritySettings, load_settings
from hubpulse_common.supervise import Supervised
from hubpulse_common.transient import is_transient

log = get_logger(__name__)

E = TypeVar("E", bound=Event)

CONSUMED = Counter("hubpulse_kafka_consumed_total", "Messages handled and committed", ["topic", "group"])
FAILED = Counter("hubpulse_kafka_failed_total", "Handler attempts that raised", ["topic", "group"])
TRANSIENT = Counter(
    "hubpulse_kafka_transient_failures_total", "Handler attempts that failed transiently (retried)", ["topic", "group"]
)
DEAD_LETTERED = Counter("hubpulse_kafka_dead_lettered_total", "Messages sent to the DLQ", ["topic", "group"])
PUBLISHED = Counter("hubpulse_kafka_published_total", "Events published", ["topic"])
LOST = Counter("hubpulse_kafka_lost_total", "Best-effort events the broker did not take", ["topic"])
LAG = Gauge("hubpulse_kafka_consumer_lag", "High watermark minus committed position", ["topic", "group"])
PARTITION_LAG = Gauge(
    "hubpulse_kafka_consumer_partition_lag", "Lag of one partition this pod owns", ["topic", "group", "partition"]
)
BATCH_SECONDS = Histogram(
    "hubpulse_kafka_batch_seconds",
    "Handler time per batch",
    ["topic", "group"],
    buckets=(0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


STOP_TIMEOUT_S = 15.0

# What the bus adds to a dead letter's own headers (a replay strips them again)
DEAD_LETTER_HEADERS = frozenset(
    {
        "x-error",
        "x-error-type",
        "x-original-topic",
        "x-original-partition",
        "x-original-offset",
        "x-failed-at",
        "x-consumer-group",
    }
)

SCHEMA_VERSIONS: dict[str, bytes] = {
    e.topic: str(e.model_fields["schema_version"].default).encode() for e in ALL_EVENTS
}


class _Abandoned(Exception):
    """The batch in hand was given up uncommitted (stop or rebalance during a transient outage)."""


def security_options(security: KafkaSecuritySettings | None = None) -> dict[str, Any]:
    """The aiokafka client arguments for HUBPULSE_KAFKA_SECURITY_PROTOCOL and friends (every client: producer,
    consumers, admin), read from the environment unless given; `ConfigError` names what is missing."""
    security = security or load_settings(KafkaSecuritySettings)
    options: dict[str, Any] = {"security_protocol": security.security_protocol}
    if security.security_protocol.startswith("SASL_"):
        if not security.sasl_username or security.sasl_password is None:
            raise ConfigError(
                f"HUBPULSE_KAFKA_SECURITY_PROTOCOL={security.security_protocol} needs "
                "HUBPULSE_KAFKA_SASL_USERNAME and HUBPULSE_KAFKA_SASL_PASSWORD"
            )
        options |= {
            "sasl_mechanism": security.sasl_mechanism,
            "sasl_plain_username": security.sasl_username,
            "sasl_plain_password": security.sasl_password.get_secret_value(),
        }
    if security.security_protocol.endswith("SSL"):
        try:
            options["ssl_context"] = create_ssl_context(cafile=security.ssl_cafile)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"HUBPULSE_KAFKA_SSL_CAFILE={security.ssl_cafile}: {exc}") from None
    return options


def _headers(topic: str, trace_id: str | None) -> list[tuple[str, bytes]]:
    headers = [(TRACE_HEADER, (trace_id or current_trace_id() or "").encode())]
    if topic in SCHEMA_VERSIONS:  # lets a consumer route on the minor version without parsing the value
        headers.append((SCHEMA_VERSION_HEADER, SCHEMA_VERSIONS[topic]))
    return headers


@dataclass(frozen=True, slots=True)
class Outgoing:
    """An event to publish, optionally carrying the trace id of the work that caused it."""

    event: Event
    trace_id: str | None = None


@functools.lru_cache(maxsize=65_536)
def _key_hash(key: bytes) -> int:
    return int(murmur2(key)) & 0x7FFFFFFF


def cached_partitioner(key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
    """aiokafka's DefaultPartitioner with each key's murmur2 remembered: it is pure Python, a few hundred bytecodes
    per call, and a producer of per-call events (the gateway's inference events) sends the same few keys again and
    again. The same partition as the default for every key."""
    if key is None:
        return int(DefaultPartitioner()(key, all_partitions, available))
    return all_partitions[_key_hash(key) % len(all_partitions)]


class EventBus:
    """The producer side. One per process; started and stopped by the service lifespan."""

    def __init__(self, bootstrap: str, client_id: str, *, linger_ms: int = 10) -> None:
        self._bootstrap = bootstrap
        # Idempotent producers are not available on every broker we target (Tansu); consumers dedupe.
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            client_id=client_id,
            acks="all",
            **security_options(),
            enable_idempotence=False,
            linger_ms=linger_ms,
            max_batch_size=1 << 20,
            max_request_size=8 << 20,
            request_timeout_ms=30000,
            partitioner=cached_partitioner,
        )
        self._lost_series: set[str] = set()  # topics whose lost-events counter exists (publish_best_effort)

    async def start(self) -> None:
        try:
            await self._producer.start()
        except KafkaConnectionError as exc:
            raise ConfigError(f"HUBPULSE_KAFKA_BOOTSTRAP={self._bootstrap}: cannot reach the broker ({exc})") from None

    async def stop(self) -> None:
        await self._producer.stop()

    async def publish(self, event: Event, *, trace_id: str | None = None) -> None:
        await self._producer.send_and_wait(
            event.topic,
            event.model_dump_json().encode(),
            key=event.key().encode(),
            headers=_headers(event.topic, trace_id),
        )
        PUBLISHED.labels(event.topic).inc()

    async def publish_best_effort(self, event: Event) -> None:
        """Queue `event` without waiting for the broker's ack; a failure is logged and counted, never raised.

        For telemetry about a call (an inference event): a broker hiccup must neither fail nor slow the call.
        """
        topic = event.topic
        if topic not in self._lost_series:  # the series exists at 0 before a first loss, so increase() sees it
            LOST.labels(topic)
            self._lost_series.add(topic)

        def settled(future: asyncio.Future[object]) -> None:
            if future.cancelled() or future.exception() is not None:
                LOST.labels(topic).inc()
                log.warning(
                    "kafka.event_lost", topic=topic, error=repr(None if future.cancelled() else future.exception())
                )
            else:
                PUBLISHED.labels(topic).inc()

        try:
            future = await self._producer.send(
                topic, event.model_dump_json().encode(), key=event.key().encode(), headers=_headers(topic, None)
            )
        except (KafkaError, IllegalStateError) as exc:
            LOST.labels(topic).inc()
            log.warning("kafka.event_lost", topic=topic, error=repr(exc))
            return
        future.add_done_callback(settled)

    async def publish_many(self, items: Iterable[Outgoing | Event]) -> int:
        """Send a batch and wait until the broker acknowledged all of it. Returns how many were sent."""
        futures = []
        counts: dict[str, int] = {}
        for item in items:
            out = item if isinstance(item, Outgoing) else Outgoing(item)
            event = out.event
            futures.append(
                await self._producer.send(
                    event.topic,
                    event.model_dump_json().encode(),
                    key=event.key().encode(),
                    headers=_headers(event.topic, out.trace_id),
                )
            )
            counts[event.topic] = counts.get(event.topic, 0) + 1
        if futures:
            await asyncio.gather(*futures)
        for topic, n in counts.items():
            PUBLISHED.labels(topic).inc(n)
        return len(futures)

    async def publish_encoded(
        self, topic: str, items: Iterable[tuple[bytes, bytes]], *, trace_id: str | None = None
    ) -> int:
        """`publish_bulk` for (key, JSON value) pairs of one topic; the caller guarantees valid events."""
        pairs = list(items)
        return await self.publish_bulk(topic, [k for k, _ in pairs], [v for _, v in pairs], trace_id=trace_id)

    async def publish_raw(
        self, topic: str, value: bytes, *, key: bytes | None, headers: list[tuple[str, bytes]]
    ) -> None:
        await self._producer.send_and_wait(topic, value, key=key, headers=headers)

    async def _partitions(self, topic: str) -> list[int]:
        # the same list, in the same order, that AIOKafkaProducer._partition hands the partitioner
        return list(await self._producer.client._wait_on_metadata(topic))

    async def partition_count(self, topic: str) -> int:
        """How many partitions `topic` has, as the producer's partitioner sees them (for `partition_slots`)."""
        return len(await self._partitions(topic))

    async def publish_bulk(
        self,
        topic: str,
        keys: Sequence[bytes],
        values: Sequence[bytes],
        *,
        trace_id: str | None = None,
    ) -> int:
        """Pre-encoded (key, JSON value) events of one topic, as one record batch per partition and size limit.

        `publish_many` pays one `await send()` per message (partitioner, accumulator, a future each);
        this fills aiokafka `BatchBuilder`s directly. Keys map to partitions exactly as the default
        partitioner maps them (murmur2, vectorised), so one key's events stay on one partition, in order.
        The caller guarantees each value is a valid event of `topic`. Returns how many were sent, once the
        broker acknowledged all of them.
        """
        if len(keys) != len(values):
            raise ValueError("keys and values differ in length")
        if not keys:
            return 0
        producer = self._producer
        partitions = await self._partitions(topic)
        slots = partition_slots(keys, len(partitions))
        headers = _headers(topic, trace_id)
        futures: list[asyncio.Future[object]] = []
        for slot in np.unique(slots).tolist():
            partition = partitions[slot]
            builder = producer.create_batch()
            for i in np.flatnonzero(slots == slot).tolist():
                if builder.append(key=keys[i], value=values[i], timestamp=None, headers=headers) is None:
                    futures.append(await producer.send_batch(builder, topic, partition=partition))
                    builder = producer.create_batch()
                    # an empty batch takes any single message (aiokafka lets the first one exceed batch_size)
                    if builder.append(key=keys[i], value=values[i], timestamp=None, headers=headers) is None:
                        raise ValueError(f"event {keys[i]!r} does not fit in a record batch")
            if builder.record_count():
                futures.append(await producer.send_batch(builder, topic, partition=partition))
        await asyncio.gather(*futures)
        PUBLISHED.labels(topic).inc(len(keys))
        return len(keys)

    async def ping(self) -> None:
        """Raise unless the broker answers a metadata request (readiness)."""
        await self._producer.client.fetch_all_metadata()


_M = np.uint32(0x5BD1E995)


def murmur2_many(keys: Sequence[bytes]) -> npt.NDArray[np.uint32]:
    """Kafka's murmur2 (aiokafka.partitioner.murmur2, the Java client's) of many keys at once, in numpy."""
    n = len(keys)
    lengths = np.fromiter(map(len, keys), dtype=np.int64, count=n)
    width = (int(lengths.max(initial=0)) // 4 + 2) * 4  # room for the tail bytes of the longest key
    data = np.zeros((n, width), dtype=np.uint8)
    if n:
        # zero-padded fixed-width bytes; padding never enters the hash (blocks and tail stop at each length)
        packed = np.array(keys, dtype=f"S{width}").view(np.uint8).reshape(n, width)
        data[:, : packed.shape[1]] = packed
    words = data.view("<u4").astype(np.uint32)
    blocks = lengths // 4
    with np.errstate(over="ignore"):
        h = (np.uint32(0x9747B28C) ^ lengths.astype(np.uint32)).astype(np.uint32)
        for i in range(int(blocks.max(initial=0))):
            k = words[:, i] * _M
            k ^= k >> np.uint32(24)
            k *= _M
            h = np.where(i < blocks, (h * _M) ^ k, h)
        extra, base = lengths % 4, blocks * 4
        rows = np.arange(n)
        b0 = data[rows, base].astype(np.uint32)
        b1 = data[rows, np.minimum(base + 1, width - 1)].astype(np.uint32)
        b2 = data[rows, np.minimum(base + 2, width - 1)].astype(np.uint32)
        tail = np.where(extra >= 3, b2 << np.uint32(16), 0) ^ np.where(extra >= 2, b1 << np.uint32(8), 0) ^ b0
        h = np.where(extra >= 1, (h ^ tail.astype(np.uint32)) * _M, h)
        h ^= h >> np.uint32(13)
        h *= _M
        h ^= h >> np.uint32(15)
    return h.astype(np.uint32)


def partition_slots(keys: Sequence[bytes], n_partitions: int) -> npt.NDArray[np.int64]:
    """Index into the topic's partition list for each key, as aiokafka's DefaultPartitioner picks it."""
    return ((murmur2_many(keys) & np.uint32(0x7FFFFFFF)) % np.uint32(n_partitions)).astype(np.int64)


@dataclass(frozen=True, slots=True)
class Received(Generic[E]):
    """A parsed event and where it came from."""

    event: E
    topic: str
    partition: int
    offset: int
    trace_id: str | None


Handler = Callable[[Sequence[Received[E]]], Awaitable[None]]


class _WaitForBatchOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, lock: asyncio.Lock, interrupt: asyncio.Event, stopping: asyncio.Event) -> None:
        self._lock = lock
        self._interrupt = interrupt
        self._stopping = stopping

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        # The batch in hand commits before its partitions move to another member; one stuck retrying a
        # transient failure is abandoned instead (uncommitted: the new owner redelivers it).
        self._interrupt.set()
        try:
            async with self._lock:
                pass
        finally:
            if not self._stopping.is_set():
                self._interrupt.clear()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        return None


async def pin_new_groups(consumers: Sequence[BatchConsumer[Any]]) -> None:
    """A new group whose consumers start at the latest offset commits it before any of them joins: "from now on"
    then means from this start, not from the group's first assignment (events published in between would be
    skipped), nor from a restart before its first batch. Offsets already committed are left as they are. Kafka
    takes a commit from outside a group only while the group has no member, hence before the first joins."""
    topics: dict[tuple[str, str], set[str]] = {}
    for consumer in consumers:
        if consumer.starts_at_latest:
            topics.setdefault((consumer._bootstrap, consumer.group_id), set()).add(consumer.topic)
            consumer._pinned = True
    for (bootstrap, group), names in topics.items():
        probe = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False, **security_options()
        )
        await probe.start()
        try:
            await probe.topics()  # metadata: the topics' partitions
            parts = [TopicPartition(t, p) for t in sorted(names) for p in sorted(probe.partitions_for_topic(t) or ())]
            probe.assign(parts)
            unset = [tp for tp in parts if await probe.committed(tp) is None]
            if unset:
                ends = await probe.end_offsets(unset)
                await probe.commit({tp: ends[tp] for tp in unset})
                log.info("kafka.group_pinned_at_latest", group=group, topics=sorted(names), partitions=len(unset))
        except KafkaError as exc:  # e.g. a replica already joined: the members' auto_offset_reset applies
            log.warning("kafka.group_pin_failed", group=group, topics=sorted(names), error=str(exc))
        finally:
            await probe.stop()


async def start_consumers(consumers: Sequence[BatchConsumer[Any]]) -> None:
    """Start consumers that may share a group: new groups are pinned (`pin_new_groups`) before any joins."""
    await pin_new_groups(consumers)
    for consumer in consumers:
        await consumer.start()


async def stop_consumers(consumers: Sequence[BatchConsumer[Any]]) -> None:
    """Stop consumers together: each leave of a shared group starts a rebalance the next one's leave would wait on,
    so one after the other a service with four consumers took up to four stop timeouts to drain."""
    await asyncio.gather(*(consumer.stop() for consumer in consumers))


def _leave_from_first_generation(consumer: AIOKafkaConsumer) -> None:
    """Makes `consumer.stop()` leave its group from the group's first generation too.

    aiokafka sends LeaveGroup only from generation 1, the first Apache Kafka hands out; the embedded broker (Tansu:
    `hubpulse up`, the tests) numbers the first one 0. A member that does not leave stays in its group until its
    session times out, and a restarted service's join waits for that, then joins twice (docs/decisions.md, the
    embedded platform). Nothing else reads the number once the batch in hand is committed (a heartbeat sent
    meanwhile at most asks for a rejoin, which a closing coordinator skips)."""
    coordinator = getattr(consumer, "_coordinator", None)
    if coordinator is not None and coordinator.generation == 0 and coordinator.member_id:
        coordinator.generation = 1


class BatchConsumer(Generic[E]):
    """Consume one topic as typed events in batches, with at-least-once delivery (module docstring)."""

    def __init__(
        self,
        *,
        bootstrap: str,
        group_id: str,
        topic: str,
        event_type: type[E],
        handler: Handler[E],
        bus: EventBus,
        max_batch: int = 2000,
        max_attempts: int = 3,
        retry_wait_s: float = 0.2,
        max_retry_wait_s: float = 5.0,
        poll_timeout_ms: int = 500,
        start_at: Literal["earliest", "latest"] = "earliest",
        session_timeout_ms: int = ConsumerSettings.model_fields["consumer_session_timeout_ms"].default,
    ) -> None:
        self.topic = topic
        self.group_id = group_id
        self._bootstrap = bootstrap
        self._start_at = start_at
        self._pinned = False
        self._lag_partitions: set[int] = set()
        self._event_type = event_type
        self._handler = handler
        self._bus = bus
        self._max_batch = max_batch
        self._max_attempts = max_attempts
        self._wait = wait_exponential(multiplier=retry_wait_s, max=max_retry_wait_s)
        self._poll_timeout_ms = poll_timeout_ms
        self._stopping = asyncio.Event()
        # set by stop() and by a revocation: a batch retrying a transient failure gives up (uncommitted)
        self._interrupt = asyncio.Event()
        self._batch_lock = asyncio.Lock()
        # first offset of each partition in the batch in hand: where a failed batch rewinds to
        self._in_hand: dict[TopicPartition, int] = {}
        self._transient: tuple[float, str] | None = None  # (since, error) while retrying a transient failure
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset=start_at,  # for a group without committed offsets only: those always win
            max_poll_records=max_batch,
            fetch_max_bytes=32 << 20,
            max_partition_fetch_bytes=8 << 20,
            # Long enough for a slow batch (e.g. a retried DB write) without leaving the group.
            max_poll_interval_ms=300_000,
            session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=1_000,
            **security_options(),
        )
        # report it with `supervise.report(app, consumer.loop)`: /readyz is down while it retries an outage
        self.loop = Supervised(f"consume:{topic}", self._run, health=self._health)

    @classmethod
    def of(
        cls,
        settings: ConsumerSettings,
        bus: EventBus,
        event_type: type[E],
        handler: Handler[E],
        *,
        poll_timeout_ms: int = 500,
        start_at: Literal["earliest", "latest"] = "earliest",
    ) -> BatchConsumer[E]:
        """The service's consumer of `event_type`'s topic (its brokers, group and batch size)."""
        return cls(
            bootstrap=settings.kafka_bootstrap,
            group_id=settings.consumer_group,
            topic=event_type.topic,
            event_type=event_type,
            handler=handler,
            bus=bus,
            max_batch=settings.batch_size,
            poll_timeout_ms=poll_timeout_ms,
            start_at=start_at,
            session_timeout_ms=settings.consumer_session_timeout_ms,
        )

    @property
    def starts_at_latest(self) -> bool:
        return self._start_at == "latest"

    async def start(self) -> None:
        """Join the group and consume. A consumer that shares its group with others is started with them by
        `start_consumers` (a new group's start is committed before any of them joins)."""
        if self.starts_at_latest and not self._pinned:
            await pin_new_groups([self])
        # Each counter's series exists at 0 from the start: one created by its first increment is first scraped
        # at 1 or more, and increase() (the dead-letter and failure alerts) never sees that first step.
        for counter in (CONSUMED, FAILED, TRANSIENT, DEAD_LETTERED):
            counter.labels(self.topic, self.group_id)
        await self._consumer.start()
        self._consumer.subscribe(
            [self.topic], listener=_WaitForBatchOnRevoke(self._batch_lock, self._interrupt, self._stopping)
        )
        self.loop.start()

    async def stop(self) -> None:
        """Finish the batch in hand (or abandon it, uncommitted, if it waits on an outage), commit, leave."""
        self._stopping.set()
        self._interrupt.set()
        async with self._batch_lock:
            # The batch in hand, if any, is committed (or abandoned) once the lock is ours. What the loop waits on
            # now holds nothing uncommitted: a fetch, the lag, or an assignment, which a rebalance can hold for its
            # slowest member's whole rebalance timeout (docs/decisions.md, the embedded platform), so cancel.
            await self.loop.stop()
        _leave_from_first_generation(self._consumer)
        try:
            # Leaving the group can wait on a rebalance in progress; a drain must still end (the group's
            # session timeout removes us anyway, and the batch in hand is already committed).
            await asyncio.wait_for(self._consumer.stop(), STOP_TIMEOUT_S)
        except TimeoutError:
            log.warning("kafka.consumer_stop_timed_out", topic=self.topic, group=self.group_id)

    @property
    def running(self) -> bool:
        return self.loop.running

    def _health(self) -> str | None:
        if self._transient is None:
            return None
        since, error = self._transient
        return f"retrying a transient failure for {time.monotonic() - since:.0f}s: {error}"

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self._poll_once()
            except _Abandoned as exc:
                log.warning("kafka.batch_abandoned", topic=self.topic, group=self.group_id, error=str(exc.__cause__))
                await self._rewind()
            except KafkaError as exc:
                log.warning("kafka.poll_failed", topic=self.topic, error=str(exc))
                await self._pause(1.0)
                await self._rewind()
            except Exception:
                # Never die silently: a dead loop would leave the service alive and consuming nothing.
                log.exception("kafka.consumer_loop_failed", topic=self.topic, group=self.group_id)
                await self._pause(1.0)
                await self._rewind()

    async def _poll_once(self) -> None:
        batches = await self._consumer.getmany(timeout_ms=self._poll_timeout_ms, max_records=self._max_batch)
        if batches:
            async with self._batch_lock:
                self._in_hand = {tp: records[0].offset for tp, records in batches.items() if records}
                records = [r for tp in sorted(batches, key=lambda t: t.partition) for r in batches[tp]]
                await self._process(records)
                await self._commit(batches)
                self._in_hand = {}
        await self._update_lag()

    async def _rewind(self) -> None:
        """After a failure mid-batch, seek back to the batch's first offsets so nothing fetched is skipped.

        Explicit offsets, not `seek_to_committed()`: a fresh group has no committed offset, and aiokafka then
        leaves the position past the records fetched. A partition no longer assigned (a rebalance meanwhile)
        is skipped: its next owner starts from the committed offset.
        """
        in_hand, self._in_hand = self._in_hand, {}
        for tp, offset in in_hand.items():
            try:
                self._consumer.seek(tp, offset)
            except (AssertionError, IllegalStateError, KafkaError) as exc:  # aiokafka asserts the assignment
                log.info("kafka.rewind_skipped", topic=tp.topic, partition=tp.partition, error=repr(exc))

    async def _pause(self, seconds: float) -> None:
        """Sleep, cut short by stop() or a revocation."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._interrupt.wait(), seconds)

    async def _process(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        good: list[Received[E]] = []
        for record in records:
            try:
                event = self._event_type.model_validate_json(record.value or b"")
            except ValidationError as exc:
                await self._dead_letter(record, exc)
                continue
            good.append(Received(event, record.topic, record.partition, record.offset, _trace_of(record)))
        if not good:
            return
        with BATCH_SECONDS.labels(self.topic, self.group_id).time():
            error = await self._handle(good, self._max_attempts)
        if error is None:
            CONSUMED.labels(self.topic, self.group_id).inc(len(good))
            return
        # The batch keeps failing deterministically: find the poison by handling one message at a time.
        log.warning("kafka.batch_failed_isolating", topic=self.topic, size=len(good), error=str(error))
        by_offset = {(r.partition, r.offset): r for r in records}
        for received in good:
            single_error = await self._handle([received], 2)
            if single_error is None:
                CONSUMED.labels(self.topic, self.group_id).inc()
            else:
                await self._dead_letter(by_offset[(received.partition, received.offset)], single_error)

    async def _handle(self, batch: Sequence[Received[E]], poison_attempts: int) -> Exception | None:
        token = trace_id_var.set(batch[0].trace_id if len(batch) == 1 else None)
        try:
            return await self._attempt(lambda: self._handler(batch), poison_attempts)
        finally:
            trace_id_var.reset(token)

    async def _attempt(self, work: Callable[[], Awaitable[None]], poison_attempts: int) -> Exception | None:
        """Run `work` until it succeeds (None) or fails deterministically `poison_attempts` times (that error).

        Transient failures (`is_transient`) are retried without bound and do not count; raises `_Abandoned`
        when stop() or a revocation comes while the last failure was transient.
        """
        failures = 0

        def give_up(_: RetryCallState) -> bool:
            return failures >= poison_attempts or self._interrupt.is_set()

        try:
            async for attempt in AsyncRetrying(
                stop=give_up,
                wait=self._wait,
                retry=retry_if_exception_type(Exception),
                sleep=self._pause,
                before_sleep=self._retrying,
                reraise=True,
            ):
                with attempt:
                    try:
                        await work()
                    except Exception as exc:
                        FAILED.labels(self.topic, self.group_id).inc()
                        if is_transient(exc):
                            TRANSIENT.labels(self.topic, self.group_id).inc()
                            if self._transient is None:
                                self._transient = (time.monotonic(), f"{type(exc).__name__}: {exc}"[:300])
                        else:
                            failures += 1
                            self._transient = None
                        raise
        except Exception as exc:
            if is_transient(exc):
                raise _Abandoned(str(exc)) from exc
            return exc
        self._transient = None
        return None

    def _retrying(self, state: RetryCallState) -> None:
        assert state.outcome is not None
        assert state.next_action is not None
        exc = state.outcome.exception()
        log.warning(
            "kafka.retrying",
            topic=self.topic,
            group=self.group_id,
            transient=is_transient(exc) if exc is not None else False,
            attempt=state.attempt_number,
            wait_s=round(state.next_action.sleep, 2),
            error=f"{type(exc).__name__}: {exc}"[:500],
        )

    async def _dead_letter(self, record: ConsumerRecord[bytes, bytes], error: Exception) -> None:
        own = [(k, v) for k, v in record.headers or () if k not in DEAD_LETTER_HEADERS]  # a replay failing again
        headers = [
            *own,
            ("x-error", str(error)[:2000].encode()),
            ("x-error-type", type(error).__name__.encode()),
            ("x-original-topic", record.topic.encode()),
            ("x-original-partition", str(record.partition).encode()),
            ("x-original-offset", str(record.offset).encode()),
            ("x-failed-at", datetime.now(UTC).isoformat().encode()),
            ("x-consumer-group", self.group_id.encode()),
        ]
        value = record.value or b""

        async def publish() -> None:
            await self._bus.publish_raw(dlq_topic(record.topic), value, key=record.key, headers=headers)

        # a broker hiccup is waited out; any other failure to write the DLQ fails the batch (rewound, redone)
        publish_error = await self._attempt(publish, 1)
        if publish_error is not None:
            raise publish_error
        DEAD_LETTERED.labels(self.topic, self.group_id).inc()
        log.error(
            "kafka.dead_lettered",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            error_type=type(error).__name__,
            error=str(error)[:500],
        )

    async def _commit(self, batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        offsets = {tp: records[-1].offset + 1 for tp, records in batches.items() if records}
        try:
            await self._consumer.commit(offsets)
        except KafkaError as exc:
            # Lost the partitions mid-batch: the new owner redelivers; idempotent handlers absorb it.
            log.warning("kafka.commit_failed", topic=self.topic, error=str(exc))

    async def _update_lag(self) -> None:
        lags: dict[int, int] = {}
        for tp in list(self._consumer.assignment()):
            highwater = self._consumer.highwater(tp)
            if highwater is not None:
                with contextlib.suppress(IllegalStateError):  # revoked by a rebalance meanwhile
                    lags[tp.partition] = max(0, highwater - await self._consumer.position(tp))
        self._report_lag(lags)

    def _report_lag(self, lags: dict[int, int]) -> None:
        """The total and each owned partition's lag; partitions a rebalance took away stop being reported."""
        LAG.labels(self.topic, self.group_id).set(sum(lags.values()))
        for partition in self._lag_partitions - lags.keys():
            PARTITION_LAG.remove(self.topic, self.group_id, str(partition))
        for partition, lag in lags.items():
            PARTITION_LAG.labels(self.topic, self.group_id, str(partition)).set(lag)
        self._lag_partitions = set(lags)

    async def _uncommitted(self, parts: list[TopicPartition]) -> dict[int, int]:
        """Per partition, the messages the group (every replica) has not committed."""
        ends = await self._consumer.end_offsets(parts)
        return {tp.partition: max(0, ends[tp] - (await self._consumer.committed(tp) or 0)) for tp in parts}

    async def caught_up(self) -> bool:
        """Whether this consumer has joined its group and the group has committed all that was on every partition
        of the topic (those other replicas own too): a service can then take "no such event" as none sent, not as
        not read yet."""
        if not self._consumer.assignment():
            return False
        parts = [TopicPartition(self.topic, p) for p in sorted(self._consumer.partitions_for_topic(self.topic) or ())]
        return not any((await self._uncommitted(parts)).values())

    async def lag(self) -> int:
        """Messages not yet committed by this group, over its assigned partitions."""
        assigned = list(self._consumer.assignment())
        if not assigned:
            return 0
        lags = await self._uncommitted(assigned)
        self._report_lag(lags)
        return sum(lags.values())


def _trace_of(record: ConsumerRecord[bytes, bytes]) -> str | None:
    for key, value in record.headers or ():
        if key == TRACE_HEADER and value:
            return bytes(value).decode()
    return None


async def ensure_topics(
    bootstrap: str, topics: Iterable[str] = ALL_TOPICS, *, partitions: int = 4, with_dlq: bool = True
) -> None:
    """Create the topics (and their DLQs) if missing; safe to call from every process at start-up."""
    names = list(topics)
    if with_dlq:
        names += [dlq_topic(t) for t in names]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000, **security_options())
    try:
        await admin.start()
    except KafkaConnectionError as exc:
        raise ConfigError(f"HUBPULSE_KAFKA_BOOTSTRAP={bootstrap}: cannot reach the broker ({exc})") from None
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names if n not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
    finally:
        await admin.close()
