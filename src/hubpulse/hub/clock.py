"""The replay clock: which day is served. Advancing builds the next day's snapshot before it is switched in."""

from __future__ import annotations

import threading

from hubpulse.hub.snapshot import Snapshot
from hubpulse.hub.source import DaySource


class DayOutOfRange(ValueError):
    pass


class ReplayClock:
    def __init__(self, source: DaySource, start_day: int = 0) -> None:
        self.source = source
        self._lock = threading.Lock()
        self._snapshot = self._build(start_day)
        self._previous: Snapshot | None = None

    @property
    def n_days(self) -> int:
        return len(self.source.dates)

    def _build(self, day: int) -> Snapshot:
        if not 0 <= day < len(self.source.dates):
            raise DayOutOfRange(f"day {day} is outside 0..{len(self.source.dates) - 1}")
        return Snapshot(day, self.source.columns(day))

    @property
    def current(self) -> Snapshot:
        return self._snapshot

    def snapshot_for(self, day: int) -> Snapshot:
        """The snapshot a cursor was issued on, if still held (today or yesterday), else today."""
        previous = self._previous
        if previous is not None and previous.day == day:
            return previous
        return self._snapshot

    def go_to(self, day: int) -> Snapshot:
        with self._lock:
            if day == self._snapshot.day:
                return self._snapshot
            built = self._build(day)
            # keep the previous day so walks that started on it finish on a consistent snapshot
            self._previous, self._snapshot = self._snapshot, built
            return built

    def state(self) -> dict[str, object]:
        snap = self._snapshot
        return {
            "day": snap.day,
            "date": snap.cols.date.isoformat(),
            "days": self.n_days,
            "first_date": self.source.dates[0].isoformat(),
            "last_date": self.source.dates[-1].isoformat(),
            "models": len(snap),
            "source": self.source.description,
        }
