"""The metrics service's logic as plain functions on plain data: statistics, series, alert rules, CSV."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import numpy as np

from hubpulse_metrics.schemas import (
    AlertRule,
    LatencyStats,
    LiveDeployment,
    ResourceStats,
    SeriesPoint,
    UsageRow,
)

PERCENTILES = (50.0, 95.0, 99.0)


@dataclass(frozen=True, slots=True)
class Call:
    """One inference call as the statistics need it."""

    deployment_id: str
    at: datetime
    latency_ms: float
    ok: bool
    inputs: int


@dataclass(frozen=True, slots=True)
class Transition:
    """An alert rule started or stopped firing for one deployment."""

    rule: AlertRule
    deployment_id: str
    state: Literal["firing", "resolved"]
    value: float


def minute_of(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


def latency_stats(calls: Sequence[Call], window_s: float) -> LatencyStats:
    """Exact percentiles (numpy's linear interpolation) over every call in the window."""
    errors = sum(1 for c in calls if not c.ok)
    inputs = sum(c.inputs for c in calls)
    if not calls:
        return LatencyStats(
            requests=0,
            errors=0,
            error_rate=0.0,
            throughput_rps=0.0,
            inputs=0,
            p50_ms=None,
            p95_ms=None,
            p99_ms=None,
            mean_ms=None,
            max_ms=None,
        )
    latencies = np.fromiter((c.latency_ms for c in calls), dtype=np.float64, count=len(calls))
    p50, p95, p99 = (float(v) for v in np.percentile(latencies, PERCENTILES))
    return LatencyStats(
        requests=len(calls),
        errors=errors,
        error_rate=errors / len(calls),
        throughput_rps=len(calls) / window_s if window_s > 0 else 0.0,
        inputs=inputs,
        p50_ms=p50,
        p95_ms=p95,
        p99_ms=p99,
        mean_ms=float(latencies.mean()),
        max_ms=float(latencies.max()),
    )


def minute_series(calls: Iterable[Call]) -> list[SeriesPoint]:
    """One point per minute that had calls, in time order."""
    by_minute: dict[datetime, list[Call]] = defaultdict(list)
    for call in calls:
        by_minute[minute_of(call.at)].append(call)
    return [
        SeriesPoint(minute=minute, **latency_stats(group, 60.0).model_dump())
        for minute, group in sorted(by_minute.items())
    ]


def by_deployment(calls: Iterable[Call]) -> dict[str, list[Call]]:
    grouped: dict[str, list[Call]] = defaultdict(list)
    for call in calls:
        grouped[call.deployment_id].append(call)
    return grouped


def live_stats(calls: Iterable[Call], window_s: float) -> list[LiveDeployment]:
    return [
        LiveDeployment(deployment_id=dep, **latency_stats(group, window_s).model_dump())
        for dep, group in sorted(by_deployment(calls).items())
    ]


def rule_value(rule: AlertRule, stats: LatencyStats) -> float | None:
    """The rule's metric, or None when the window holds too few calls to judge."""
    if stats.requests < rule.min_requests:
        return None
    if rule.metric == "error_rate":
        return stats.error_rate
    return stats.p95_ms


def evaluate_rule(
    rule: AlertRule, calls: Iterable[Call], firing: Mapping[str, bool], deployments: Iterable[str] = ()
) -> list[Transition]:
    """Transitions of one rule: deployments over the threshold that were not firing, and firing ones back under.

    `firing` maps deployment id -> currently firing; `deployments` adds ones that may have gone quiet.
    """
    grouped = by_deployment(c for c in calls if rule.deployment_id in (None, c.deployment_id))
    transitions = []
    for dep in sorted(set(grouped) | set(firing) | set(deployments)):
        if rule.deployment_id not in (None, dep):
            continue
        value = rule_value(rule, latency_stats(grouped.get(dep, []), float(rule.window_s)))
        over = value is not None and value > rule.threshold
        if over and not firing.get(dep, False):
            transitions.append(Transition(rule, dep, "firing", float(value or 0.0)))
        elif not over and firing.get(dep, False):
            transitions.append(Transition(rule, dep, "resolved", float(value or 0.0)))
    return transitions


def resource_stats(
    cpu: Sequence[float], memory: Sequence[float], duration: Sequence[float], samples: int
) -> ResourceStats:
    def avg(values: Sequence[float]) -> float | None:
        return float(np.mean(values)) if values else None

    def top(values: Sequence[float]) -> float | None:
        return float(np.max(values)) if values else None

    return ResourceStats(
        samples=samples,
        cpu_percent_avg=avg(cpu),
        cpu_percent_max=top(cpu),
        memory_mb_avg=avg(memory),
        memory_mb_max=top(memory),
        duration_ms_avg=avg(duration),
        duration_ms_p95=float(np.percentile(duration, 95)) if duration else None,
    )


def clamp_window(
    since: datetime | None, until: datetime | None, now: datetime, default: timedelta, longest: timedelta
) -> tuple[datetime, datetime]:
    """Fill in a missing bound; raise ValueError for an empty or too long range."""
    end = until or now
    start = since or end - default
    if start >= end:
        raise ValueError("since must be before until")
    if end - start > longest:
        raise ValueError(f"the range may cover at most {longest.total_seconds() / 3600:g} hours")
    return start, end


USAGE_COLUMNS = ("key", "requests", "errors", "inputs", "request_bytes", "response_bytes", "mean_latency_ms")


def usage_csv(group_by: str, rows: Sequence[UsageRow]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow((group_by, *USAGE_COLUMNS[1:]))
    for row in rows:
        values = row.model_dump()
        writer.writerow(["" if values[c] is None else values[c] for c in USAGE_COLUMNS])
    return out.getvalue()
