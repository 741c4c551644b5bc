"""Giving the memory that large, short-lived pieces of work free back to the system (glibc's malloc).

glibc's malloc keeps freed memory for reuse, and after large frees it moves its mmap threshold up, so the next
large arrays come from the heap, where a free does not return pages either. A service that holds a day of the
whole Hub for a few seconds (the features close) then stays at that size, and the next day's peak comes on top
of what the last one left (docs/decisions/pipeline-redesign.md, session 24).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
from collections.abc import Callable

_M_MMAP_THRESHOLD = -3  # glibc's malloc.h
# Arrays of at least this many bytes get pages of their own, handed back when freed.
MMAP_THRESHOLD_BYTES = 1 << 20


@functools.cache
def _glibc(function: str, argtypes: tuple[type, ...]) -> Callable[..., int] | None:
    """A glibc malloc function, or None where the C library is another (musl, macOS)."""
    name = ctypes.util.find_library("c")
    found = getattr(ctypes.CDLL(name), function, None) if name is not None else None
    if found is not None:
        found.argtypes, found.restype = list(argtypes), ctypes.c_int
    return found


def keep_large_arrays_apart(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Every allocation of `threshold` bytes or more is mapped on its own and unmapped when freed, instead of glibc
    raising that threshold after large frees (to 32 MB) and serving a day's 16 MB columns from the heap, where
    their holes stay resident. For a process whose work comes in large, short-lived frames; whether it could."""
    mallopt = _glibc("mallopt", (ctypes.c_int, ctypes.c_int))
    return mallopt is not None and mallopt(_M_MMAP_THRESHOLD, threshold) == 1


def release_free_memory() -> bool:
    """Frees what only the cycle collector would (a frame in a reference cycle), then hands the C heap's free pages
    back to the system (glibc's `malloc_trim(0)`, every arena); whether the C library could."""
    gc.collect()
    trim = _glibc("malloc_trim", (ctypes.c_size_t,))
    if trim is None:
        return False
    trim(0)
    return True
