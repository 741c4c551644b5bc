"""Events encoded in bulk: the JSON of many events of one type without a pydantic object each.

The hot paths (a page of snapshots, a day of features, a batch of scores) build each event's fields as a plain
dict and hand it to one `EventEncoder`. Its field names come from the event class: a dict that does not carry
exactly the event's fields is refused on the first encode, so an event and its encoders cannot drift apart (a
new field in `events.py` fails every encoder's tests until each one sets it). The bytes validate back to the
event; NaN and infinities are written as null, numpy scalars as numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

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

    def _check(self, fields: Mapping[str, Any], raw: tuple[str | bytes, ...]) -> None:
        given = fields.keys()
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
