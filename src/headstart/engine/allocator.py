"""Keep freed tensor memory in the process instead of handing it back to the kernel each batch.

glibc's malloc serves every block above its mmap threshold (128 KiB, raised dynamically up to
32 MiB) with a fresh ``mmap`` and returns it with ``munmap`` when freed. A CPU forward pass of
a convolutional network allocates and frees activation maps of several MiB per layer, so every
batch maps pages, faults each one in (zeroed by the kernel) and unmaps them again. Raising the
mmap and trim thresholds to 1 GiB lets malloc reuse its own heap: scoring EfficientNet-Lite0 at
112 px, batch 64, on 2 cores went from 193 to 444 img/s (2.3×) and its system time from 4.3 s
to 0.0 s per 1,024 images; training at batch 16 is unchanged (1.02×)
(``benchmarks/results/host-allocator.md``). Results are unchanged (the same arithmetic on the
same values); the cost is that the process keeps its peak memory until it exits, which a
training or scoring process does anyway.

``HEADSTART_MALLOC=default`` leaves glibc as it is.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

ENV = "HEADSTART_MALLOC"
THRESHOLD = 1 << 30
"""Blocks up to 1 GiB come from malloc's heap, which keeps what is freed for the next batch."""

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_state = {"done": False, "tuned": False}


def tune_host_allocator() -> bool:
    """Set glibc's mmap and trim thresholds once per process (Linux with glibc only).

    Returns:
        Whether the thresholds are in force (False elsewhere, or with ``HEADSTART_MALLOC=default``).
    """
    if _state["done"]:
        return _state["tuned"]
    _state["done"] = True
    if not sys.platform.startswith("linux") or os.environ.get(ENV, "").lower() == "default":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, THRESHOLD) == 1 and mallopt(_M_TRIM_THRESHOLD, 2 * THRESHOLD - 1) == 1
    _state["tuned"] = ok
    return ok
