"""Events encoded in bulk: the JSON of many events of one type without a pydantic object each.

The hot paths (a page of snapshots, a day of features, a batch of scores) build each event's fields as a plain
dict and hand it to one `EventEncoder`. Its field names come from the event class: a dict that does not carry
exactly the event's fields is refused on the first encode, so an event and its encoders cannot drift apart (a
new field in `events.py` fails every encoder's tests until each one sets it). The bytes validate back to the
event; NaN and infinities are written as null, numpy scalars as numbers.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from datetime import UTC, date, datetime
from itertools import pairwise
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any, Generic, TypeVar

import numpy as np
import numpy.typing as npt
import orjson

from hubpulse_common.events import Event

E = TypeVar("E", bound=Event)

# what every event carries that the encoder fills in
_HEAD = ("schema_version", "occurred_at")


class EncoderMismatch(TypeError):
    """The fields handed to an encoder are not the event's fields."""


class EventEncoder(Generic[E]):
    """JSON of `event_type` events, all stamped `occurred_at` (now by default).

    `raw`: fields whose value the caller already holds as JSON text (spliced in as it is, not parsed and encoded
    again); they are written last and passed to `encode` in this order."""

    def __init__(self, event_type: type[E], occurred_at: datetime | None = None, *, raw: Sequence[str] = ()) -> None:
        occurred = (occurred_at or datetime.now(UTC)).isoformat().replace("+00:00", "Z")
        self.event_type = event_type
        self._head: dict[str, Any] = {"schema_version": event_type.model_fields["schema_version"].default}
        self._head["occurred_at"] = occurred
        self._fields = frozenset(event_type.model_fields) - set(_HEAD) - set(raw)
        self._raw_keys = tuple(b',"' + name.encode() + b'":' for name in raw)
        self._checked = False

    def _check(self, fields: Mapping[str, Any] | AbstractSet[str], raw: Sequence[object]) -> None:
        given = fields.keys() if isinstance(fields, Mapping) else fields
        if given != self._fields or len(raw) != len(self._raw_keys):
            missing, extra = sorted(self._fields - given), sorted(given - self._fields)
            raise EncoderMismatch(
                f"{self.event_type.__name__} fields: missing {missing}, unknown {extra}; "
                f"{len(raw)} raw values for {len(self._raw_keys)}"
            )
        self._checked = True

    def encode(self, fields: Mapping[str, Any], *raw: str | bytes) -> bytes:
        """One event's JSON: `fields` (every field but `schema_version`, `occurred_at` and the raw ones), then the
        raw values."""
        if not self._checked:
            self._check(fields, raw)
        body = orjson.dumps({**self._head, **fields}, option=orjson.OPT_SERIALIZE_NUMPY)
        if not raw:
            # an exact-size copy: orjson's own result keeps its buffer's spare room, so holding a day's events
            # cost several times their size (docs/decisions/pipeline-redesign.md)
            return bytes(memoryview(body))
        tail = b"".join(
            key + (value.encode() if isinstance(value, str) else value)
            for key, value in zip(self._raw_keys, raw, strict=True)
        )
        return body[:-1] + tail + b"}"

    def encode_columns(
        self, constants: Mapping[str, Any], columns: Mapping[str, Sequence[str]], *raw: Sequence[str]
    ) -> list[bytes]:
        """Many events' JSON, each the same event as `encode` gives: `constants` (the fields every event shares,
        encoded once), `columns` (each event's value as JSON text: `json_strings`, `json_floats`, `json_dates`),
        then the raw columns (JSON text). Each event is one string formatting: no dict, no orjson call per event."""
        self._check(constants.keys() | columns.keys(), raw)
        head = orjson.dumps({**self._head, **constants}, option=orjson.OPT_SERIALIZE_NUMPY)[:-1].decode()
        keys = [f',"{name}":%s' for name in columns] + [key.decode() + "%s" for key in self._raw_keys]
        template = head.replace("%", "%%") + "".join(keys) + "}"  # a `%` of the head is a literal one
        return [(template % row).encode() for row in zip(*columns.values(), *raw, strict=True)]


def json_strings(values: Iterable[str]) -> list[str]:
    """Each string as JSON text (non-ASCII escaped)."""
    return list(map(encode_basestring_ascii, values))


def json_floats(values: np.ndarray) -> list[str]:
    """Each float as JSON text: the shortest repr that reads back the same; NaN and infinities as null."""
    texts = list(map(repr, values.astype("float64").tolist()))
    for i in np.flatnonzero(~np.isfinite(values)).tolist():
        texts[i] = "null"
    return texts


def json_dates(values: Sequence[date]) -> list[str]:
    """Each date as JSON text (ISO 8601); a batch's few distinct days are formatted once each."""
    text = {day: f'"{day.isoformat()}"' for day in set(values)}
    return [text[day] for day in values]


def bounded_messages(
    runs: Iterable[tuple[int, int]],
    encode: Callable[[int, int], tuple[bytes, bytes]],
    *,
    max_rows: int,
    max_bytes: int,
    row_name: Callable[[int], str],
) -> list[tuple[bytes, bytes]]:
    """The (key, value) messages of a columnar event for rows in `runs` (lo..hi ranges, each the rows one message
    may share: one partition's, one day's), in order: up to `max_rows` rows a message, halved until each is within
    `max_bytes`. `encode(lo, hi)` gives the message of rows lo..hi; `row_name(i)` names row i in the error for a
    row over the limit alone.

    A loop over a queue, not a recursive closure: that is a reference cycle, and it kept each slice's columns alive
    until the next full garbage collection (docs/decisions/pipeline-redesign.md, session 19)."""
    out: list[tuple[bytes, bytes]] = []
    pending = deque((lo, min(lo + max_rows, end)) for start, end in runs for lo in range(start, end, max_rows))
    while pending:
        lo, hi = pending.popleft()
        key, value = encode(lo, hi)
        if len(value) <= max_bytes:
            out.append((key, value))
        elif hi - lo == 1:
            raise ValueError(f"{row_name(lo)}: {len(value)} bytes for that row alone, over {max_bytes}")
        else:
            middle = (lo + hi) // 2
            pending.extendleft([(middle, hi), (lo, middle)])
    return out


def runs_of(codes: npt.NDArray[np.integer[Any]]) -> list[tuple[int, int]]:
    """The lo..hi ranges of equal values in `codes` (sorted, or at least grouped)."""
    edges = [0, *(np.flatnonzero(np.diff(codes)) + 1).tolist(), len(codes)]
    return [(lo, hi) for lo, hi in pairwise(edges) if hi > lo]
