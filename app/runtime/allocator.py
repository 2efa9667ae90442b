"""The C allocator's shape for a long-running server (glibc only).

glibc serves a large block (128 KiB and up) from its own mapping and gives it back when freed, but after the first
such block is freed it raises that threshold to the block's size (up to 32 MiB): from then on blocks of that size
come from the heap, where what the server allocates next lands between them and the heap cannot shrink. The
recommendation features' checkpoint and the retrains make blocks of megabytes every few minutes, so a server's
resident memory rose a step at each and never came back. A fixed threshold keeps every large block a mapping of its
own (docs/performance.md, "Bounded cost as data grows"). An operator's MALLOC_MMAP_THRESHOLD_ is left as set.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)
MMAP_THRESHOLD = 128 * 1024  # glibc's own starting value, kept fixed


def fix_mmap_threshold(threshold: int = MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold for the rest of the process; False (and nothing done) on another C library or
    when the environment already sets it."""
    if os.environ.get("MALLOC_MMAP_THRESHOLD_"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return False
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):  # musl's mallopt does nothing
        return False
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    done = mallopt(M_MMAP_THRESHOLD, threshold) == 1
    if not done:
        log.warning("the C allocator's mmap threshold was not fixed", extra={"threshold": threshold})
    return done
