"""Freed memory goes back to the system after a large, short-lived piece of work (the features close)."""

from __future__ import annotations

import json
import subprocess
import sys

_FRAGMENTED = """
import json, psutil
from hubpulse_common.memory import release_free_memory
rss = lambda: psutil.Process().memory_info().rss >> 20
blocks = [bytes(100_000) + bytes([i % 256]) for i in range(3000)]  # ~300 MB from the C heap, under mmap's threshold
kept = blocks[::20]  # one block in twenty stays: the freed ones are holes glibc keeps
del blocks
before = rss()
trimmed = release_free_memory()
print(json.dumps({"before": before, "after": rss(), "trimmed": trimmed, "kept": len(kept)}))
"""


def test_a_fragmented_heap_is_handed_back() -> None:
    out = subprocess.run([sys.executable, "-c", _FRAGMENTED], capture_output=True, text=True, check=True, timeout=60)
    figures = json.loads(out.stdout)
    assert figures["trimmed"], "glibc's malloc_trim was not found"
    assert figures["before"] - figures["after"] >= 150, figures  # ~285 MB of holes


_LARGE = """
import json, sys, psutil
from hubpulse_common.memory import keep_large_arrays_apart
rss = lambda: psutil.Process().memory_info().rss >> 20
apart = keep_large_arrays_apart() if sys.argv[1] == "apart" else None
del bytearray(b"1" * (24 << 20))[:]  # a large free: glibc would now serve up to 24 MB from the heap
blocks = [bytearray(b"1" * (4 << 20)) for _ in range(80)]  # 320 MB, written (resident)
kept = blocks[::8]
del blocks
print(json.dumps({"rss": rss(), "apart": apart, "kept": len(kept)}))
"""


def test_large_arrays_freed_leave_no_holes_resident() -> None:
    def resident(mode: str) -> dict[str, int]:
        run = subprocess.run([sys.executable, "-c", _LARGE, mode], capture_output=True, text=True, check=True)
        figures: dict[str, int] = json.loads(run.stdout)
        return figures

    heap, apart = resident("heap"), resident("apart")
    assert apart["apart"]
    assert heap["rss"] - apart["rss"] >= 150, (heap, apart)  # 280 MB freed: held by the heap, returned apart
