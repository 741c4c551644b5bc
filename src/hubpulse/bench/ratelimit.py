"""`hubpulse bench ratelimit`: what a rate-limit check costs with the counters in MongoDB (shared by every
gateway replica) against this process's memory: the latency the shared storage adds to each request.

Each check is the gateway middleware's own call (`FailoverLimiter.hit`, the `limits` sliding window counter),
made one after another for `--clients` keys in turn, under a limit no key reaches (every check is counted,
none refused). MongoDB is SecantusDB started for the run, or `--mongo-url`.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
from limits import parse

from hubpulse.bench.pipeline import started_child
from hubpulse.platform.stores import free_port, mongo_spec
from hubpulse_gateway.ratelimit import FailoverLimiter, shared_limiter

Say = Callable[[str], None]


async def _timings(limiter: FailoverLimiter, checks: int, clients: int) -> list[float]:
    item = parse(f"{checks + 1}/minute")
    for n in range(clients):  # warm-up: connections, index, first documents
        await limiter.hit(item, f"warm-{n}")
    out = []
    for n in range(checks):
        start = time.perf_counter()
        allowed = await limiter.hit(item, f"ip:198.51.100.{n % clients}")
        out.append(time.perf_counter() - start)
        assert allowed
    return out


def _summary(seconds: list[float]) -> dict[str, float]:
    ms = np.array(seconds) * 1000
    return {f"p{q}_ms": round(float(np.percentile(ms, q)), 3) for q in (50, 95, 99)} | {
        "mean_ms": round(float(ms.mean()), 3)
    }


async def _measure(url: str, checks: int, clients: int) -> dict[str, Any]:
    memory = _summary(await _timings(FailoverLimiter(), checks, clients))
    limiter, client = shared_limiter(url, f"bench_{uuid.uuid4().hex[:8]}", timeout_s=5, retry_s=60)
    try:
        shared = _summary(await _timings(limiter, checks, clients))
        fell_back = limiter.fallbacks > 0
    finally:
        await client.close()
    added = {key: round(shared[key] - memory[key], 3) for key in memory}
    return {"memory": memory, "mongodb": shared, "added": added, "fell_back_to_memory": fell_back}


def run(checks: int, clients: int, mongo_url: str | None, say: Say) -> dict[str, Any]:
    with ExitStack() as stack:
        if mongo_url is None:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hubpulse-bench-ratelimit-")))
            mongo = stack.enter_context(started_child(mongo_spec(work, free_port()), work))
            mongo_url = mongo.spec.url
            store = "SecantusDB (started for the run)"
        else:
            store = "MongoDB at --mongo-url"
        say(f"{checks} checks over {clients} keys, memory then {store}")
        report = asyncio.run(_measure(mongo_url, checks, clients))
    report |= {"checks": checks, "clients": clients, "store": store, "load_average": os.getloadavg()}
    report["ok"] = not report["fell_back_to_memory"]
    return report
