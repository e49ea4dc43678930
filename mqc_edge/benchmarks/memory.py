"""Host memory of this process: resident now, and the peak so far (Linux /proc, POSIX getrusage)."""

from __future__ import annotations

import os
import resource


def resident_bytes() -> int:
    """Current resident set size; what grows when a predictor keeps every frame."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        resident_pages = int(statm.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def peak_resident_bytes() -> int:
    """Peak resident set size of this process since it started (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
