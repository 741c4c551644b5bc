"""The demo's history: walk the replay Hub through its days, one finished ingestion cycle per day.

The ingestor dates snapshots by the Hub's `Date` header, and the replay Hub serves its current day there,
so advancing the Hub's clock after each completed cycle feeds the real pipeline D days of history.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

FINISHED = ("completed", "completed_with_errors")


@dataclass(frozen=True)
class DemoProgress:
    day: int  # the Hub's current day, 0-based
    days: int
    done: bool


def next_step(hub_state: dict[str, object], latest_cycle: dict[str, object] | None) -> str:
    """'advance' when the Hub's current day is ingested and more days remain, 'done' after the last, else 'wait'."""
    if latest_cycle is None or latest_cycle.get("status") not in FINISHED:
        return "wait"
    if latest_cycle.get("snapshot_date") != hub_state["date"]:
        return "wait"
    return "done" if int(str(hub_state["day"])) >= int(str(hub_state["days"])) - 1 else "advance"


async def demo_step(http: httpx.AsyncClient, hub_url: str, ingestor_url: str) -> DemoProgress:
    """One look at the Hub and the ingestor; advance the Hub's clock when its day has been ingested."""
    hub_state = (await http.get(f"{hub_url}/_replay/state")).raise_for_status().json()
    response = await http.get(f"{ingestor_url}/cycles/latest")
    latest = response.json() if response.status_code == 200 else None
    step = next_step(hub_state, latest)
    if step == "advance":
        hub_state = (await http.post(f"{hub_url}/_replay/advance", json={"days": 1})).raise_for_status().json()
    return DemoProgress(day=int(hub_state["day"]), days=int(hub_state["days"]), done=step == "done")
