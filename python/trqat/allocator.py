"""glibc's malloc settings for a training process (BENCHMARKS.md, "Speed": what it cost and what fixed it).

PyTorch's CPU tensors come from malloc. glibc returns freed memory at the top of its heap to the system
once more than M_TRIM_THRESHOLD is free there, and serves blocks above a *dynamic* M_MMAP_THRESHOLD
with mmap/munmap. Both depend on the history of the process: in the worker they settled where every
training step handed its activations back to the system and faulted them in again (2.2 million minor
page faults in 120 steps of the default job at one thread, sys time 7% of user; 4x that at two
threads). Fixing both thresholds keeps the memory of one step for the next, as PyTorch's CUDA caching
allocator does on the GPU: the resident size stays at the peak of a step, which it reaches anyway.

`tune_malloc()` does it with mallopt() for the process it runs in; the managed worker calls it at
start. Elsewhere (musl, macOS, Windows) it does nothing. TRQAT_MALLOC_TUNING=0 turns it off, and
explicit MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ (or GLIBC_TUNABLES) settings are respected.
"""
import ctypes
import os
import platform

M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest: blocks below it are reused from the heap
TRIM_THRESHOLD = 1024 * 1024 * 1024  # free memory kept at the top of the heap before it is returned


def tune_malloc() -> bool:
    """Fix glibc's mmap and trim thresholds for this process. True when they were set."""
    if os.environ.get("TRQAT_MALLOC_TUNING", "1") == "0" or platform.libc_ver()[0] != "glibc":
        return False
    if any(k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")) or "malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        return False  # the user chose
    try:
        libc = ctypes.CDLL(None)
        return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    except (OSError, AttributeError):
        return False
