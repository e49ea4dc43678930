"""Latency percentiles and memory probes."""

import subprocess
import sys

import pytest

from mqc_edge.benchmarks.stats import summarize

PROBE = """
import numpy as np
from mqc_edge.benchmarks.memory import peak_resident_bytes, resident_bytes
before = resident_bytes()
block = np.ones(64 * 1024 * 1024 // 8)  # 64 MiB, every page touched
print(resident_bytes() - before, peak_resident_bytes() - before)
"""


def test_percentiles_by_hand():
    stats = summarize([4.0, 1.0, 3.0, 2.0, 100.0])
    assert stats.p50 == 3.0 and stats.n == 5 and stats.mean == 22.0
    assert stats.p90 == pytest.approx(4.0 + 0.6 * 96.0)  # between the 4th and 5th of 5 sorted values
    with pytest.raises(ValueError):
        summarize([])


def test_resident_memory_sees_a_large_allocation():
    # A fresh interpreter: in this one, pages freed by earlier tests would be reused unseen.
    output = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout
    grown, peak_grown = (int(value) for value in output.split())
    assert grown > 60 * 1024 * 1024 and peak_grown > 60 * 1024 * 1024
