"""Host memory of this process: resident now, the peak so far (Linux /proc, POSIX getrusage), and the
bytes a Tracker's state holds in arrays."""

from __future__ import annotations

import dataclasses
import os
import resource

import numpy as np


def resident_bytes() -> int:
    """Current resident set size; what grows when a predictor keeps every frame."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        resident_pages = int(statm.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def peak_resident_bytes() -> int:
    """Peak resident set size of this process since it started (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def state_array_bytes(value: object) -> int:
    """Bytes of every numpy array reachable from a Tracker state (dataclasses, dicts, sequences):
    what must stay constant once memory is full, whatever the video length. Backend handles that
    are not numpy arrays (device buffers) are not counted."""
    if isinstance(value, np.ndarray):
        return value.nbytes
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return sum(state_array_bytes(getattr(value, item.name)) for item in dataclasses.fields(value))
    if isinstance(value, dict):
        return sum(state_array_bytes(item) for item in value.values())
    if isinstance(value, (list, tuple)):
        return sum(state_array_bytes(item) for item in value)
    return 0
