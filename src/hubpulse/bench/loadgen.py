"""The benchmarks' load generator: pre-encoded HTTP/1.1 requests over keep-alive connections on loopback.

`load(port, requests, concurrency, ...)` sends each request on one of `concurrency` connections (request i on
connection i mod C), one after another per connection, and reports latency percentiles, req/s and, for the
process trees it is told to watch, CPU seconds per second of run (2.0 = two cores busy).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()


def post_json(path: str, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    head = f"POST {path} HTTP/1.1\r\nHost: bench\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
    return (head + extra + "\r\n").encode() + body


@dataclass
class _Tally:
    latencies: list[float]
    errors: int = 0
    hits: int = 0
    misses: int = 0


async def _one_connection(port: int, requests: list[bytes], tally: _Tally, deadline: float) -> None:
    """Send the requests one after another on one keep-alive connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for request in requests:
            if time.perf_counter() > deadline:
                break
            start = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"x-cache":
                    if value.strip() == b"hit":
                        tally.hits += 1
                    else:
                        tally.misses += 1
            await reader.readexactly(length)
            tally.latencies.append(time.perf_counter() - start)
            if not head.startswith(b"HTTP/1.1 200"):
                tally.errors += 1
    finally:
        writer.close()


_TICKS = os.sysconf("SC_CLK_TCK")


def _proc_stats() -> dict[int, tuple[int, float]]:
    """(parent pid, CPU seconds) of every process, from /proc (Linux; the benchmark's platform)."""
    stats = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                with open(f"/proc/{entry.name}/stat", "rb") as f:
                    fields = f.read().rpartition(b")")[2].split()  # after the command name
                stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICKS)
    return stats


def _tree_cpu(root: int, stats: dict[int, tuple[int, float]]) -> dict[int, float]:
    """CPU seconds of `root` and its descendants."""
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in stats.items():
        children.setdefault(parent, []).append(pid)
    out, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            out[pid] = stats[pid][1]
            todo.extend(children.get(pid, ()))
    return out


def _cpu_used(root: int, before: dict[int, float], stats: dict[int, tuple[int, float]]) -> float:
    """CPU seconds since `before` of the tree under `root`; processes started since count whole."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in _tree_cpu(root, stats).items())


async def load(
    port: int, requests: list[bytes], concurrency: int, max_seconds: float, watch: dict[str, int] | None = None
) -> dict[str, Any]:
    """Runs the requests; `watch` names process trees (by root pid) whose CPU seconds over the run are reported."""
    tally = _Tally([])
    watched = dict(watch or {})
    stats = _proc_stats()
    cpu_before = {name: _tree_cpu(pid, stats) for name, pid in watched.items()}
    cpu = time.process_time()
    start = time.perf_counter()
    deadline = start + max_seconds
    shards = [requests[i::concurrency] for i in range(concurrency)]
    await asyncio.gather(*(_one_connection(port, s, tally, deadline) for s in shards if s))
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu
    stats = _proc_stats()
    ms = np.array(tally.latencies) * 1000
    answered = tally.hits + tally.misses
    return {
        "requests": len(ms),
        "errors": tally.errors,
        "seconds": round(elapsed, 3),
        "rps": round(len(ms) / elapsed, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p95_ms": round(float(np.percentile(ms, 95)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "max_ms": round(float(ms.max()), 2),
        "cache_hit_ratio": round(tally.hits / answered, 3) if answered else None,
        # The load generator shares the cores with what it measures: its own CPU share.
        "client_cpu_share": round(cpu / elapsed, 3),
        # CPU seconds per second of run, per process tree (2.0 = both cores busy).
        "cpu_share": {
            "client": round(cpu / elapsed, 3),
            **{n: round(_cpu_used(pid, cpu_before[n], stats) / elapsed, 3) for n, pid in watched.items()},
        },
        # CPU milliseconds each process tree spent per answered request: unlike req/s, barely moved by what else
        # runs on the machine
        "cpu_ms_per_request": {
            n: round(_cpu_used(pid, cpu_before[n], stats) * 1000 / max(len(ms), 1), 3) for n, pid in watched.items()
        },
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }
