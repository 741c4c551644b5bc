"""The replay clock: which day is served. Advancing builds the next day's snapshot before it is switched in.

`DayTimer` is the demo clock: once the last day of the history is served, a source that can continue (a synthetic
Hub) gets a new day every `day_seconds`, so whatever reads the Hub keeps seeing it move.
"""

from __future__ import annotations

import threading
import time

from hubpulse.hub.snapshot import Snapshot
from hubpulse.hub.source import DaySource, Extendable


class DayOutOfRange(ValueError):
    pass


class ReplayClock:
    """`continues`: past the last day, an extendable source makes the next (the demo clock); else it ends there."""

    def __init__(self, source: DaySource, start_day: int = 0) -> None:
        self.source = source
        self.continues = False
        self._lock = threading.Lock()
        self._snapshot = self._build(start_day)
        self.moved_at = time.monotonic()

    @property
    def n_days(self) -> int:
        return len(self.source.dates)

    def _build(self, day: int) -> Snapshot:
        if self.continues and day >= len(self.source.dates) and isinstance(self.source, Extendable):
            self.source.extend(day + 1)
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
            self.moved_at = time.monotonic()
            return self._snapshot

    def on_last_day(self) -> bool:
        return self._snapshot.day == self.n_days - 1

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


class DayTimer:
    """Moves the clock on by one day once it has served its last day for `day_seconds` (the source makes the next
    day). Days within the history are left to whoever walks them (`POST /_replay/advance`): a timer racing that
    walk could skip a day before it was read."""

    def __init__(self, clock: ReplayClock, day_seconds: float) -> None:
        if not isinstance(clock.source, Extendable):
            raise ValueError(f"{clock.source.description} ends with its last day; only a synthetic Hub continues")
        self.clock, self.day_seconds = clock, day_seconds
        clock.continues = True
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="replay-day-timer", daemon=True)

    def start(self) -> DayTimer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(max(0.0, self.clock.moved_at + self.day_seconds - time.monotonic())):
            if self.clock.on_last_day() and time.monotonic() - self.clock.moved_at >= self.day_seconds:
                self.clock.go_to(self.clock.current.day + 1)
            elif not self.clock.on_last_day():
                self._stop.wait(min(self.day_seconds, 1.0))  # a walk of the history is under way: look again soon
