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

    def go_to(self, day: int) -> Snapshot:
        with self._lock:
            if day == self._snapshot.day:
                return self._snapshot
            # no old day is kept for walks begun on it: huggingface.co's cursors read live data
            self._snapshot = self._build(day)
            return self._snapshot

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
