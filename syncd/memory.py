"""Process memory: large buffers go back to the system as soon as they are freed.

A cycle handles buffers of a megabyte or more (a Salesforce Bulk API 2.0 result page of 2,000 rows, a
HubSpot search page, a chunk's parameter lists), most made in one thread and freed in another. glibc's
malloc raises its mmap threshold each time such a buffer is freed (the "dynamic" threshold of mallopt(3), up
to 32 MiB on 64-bit Linux): later buffers then come from the heap, which fragments and is given back only
when it happens to trim. On a 100,000-person first cycle that made the pull's resident set climb from 137
to 162 MB while the Salesforce Leads were read (Python's own allocated blocks flat), and fall back when
they were done; with the threshold fixed at glibc's default of 128 KiB it stayed at 139 MB, as at 20,000
persons. ``return_large_buffers`` fixes it (``mallopt(M_MMAP_THRESHOLD, ...)``, which also turns the
dynamic adjustment off) for the commands that run cycles or read whole orgs: ``once``, ``plan``, ``accounts``,
``run`` and the demo. Elsewhere (not glibc: musl, macOS) there is no such threshold and it does nothing; an operator's own
``MALLOC_MMAP_THRESHOLD_`` is left alone.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys

__all__ = ["MMAP_THRESHOLD", "return_large_buffers"]

log = logging.getLogger(__name__)

# mallopt(3): the parameter number of M_MMAP_THRESHOLD in glibc's <malloc.h>, and glibc's default value.
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 128 * 1024


def return_large_buffers(threshold: int = MMAP_THRESHOLD) -> bool:
    """Serve allocations of ``threshold`` bytes or more by mmap, unmapped when freed (glibc only); True
    when set."""
    if not sys.platform.startswith("linux") or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(None)  # the C library this process already runs on
    except OSError:
        return False
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None or getattr(libc, "gnu_get_libc_version", None) is None:
        return False  # not glibc: its malloc has no dynamic threshold to fix
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    done = bool(mallopt(_M_MMAP_THRESHOLD, threshold))
    log.debug("malloc: buffers of %d bytes or more are mapped and unmapped (%s)", threshold, done)
    return done
