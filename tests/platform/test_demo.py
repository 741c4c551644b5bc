"""The demo driver's decision: advance the replay Hub only once its current day is ingested."""

from __future__ import annotations

from hubpulse.platform.demo import next_step

HUB = {"day": 2, "days": 5, "date": "2025-01-03"}


def test_waits_for_a_finished_cycle_of_the_hubs_day() -> None:
    assert next_step(HUB, None) == "wait"
    assert next_step(HUB, {"status": "running", "snapshot_date": "2025-01-03"}) == "wait"
    assert next_step(HUB, {"status": "completed", "snapshot_date": "2025-01-02"}) == "wait"
    assert next_step(HUB, {"status": "failed", "snapshot_date": "2025-01-03"}) == "wait"


def test_advances_then_stops_after_the_last_day() -> None:
    assert next_step(HUB, {"status": "completed", "snapshot_date": "2025-01-03"}) == "advance"
    assert next_step(HUB, {"status": "completed_with_errors", "snapshot_date": "2025-01-03"}) == "advance"
    last = {"day": 4, "days": 5, "date": "2025-01-05"}
    assert next_step(last, {"status": "completed", "snapshot_date": "2025-01-05"}) == "done"
