"""Latency summaries: medians and tails, never a single mean."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class LatencyStats:
    """Milliseconds over `n` samples (warm-up already excluded by the caller)."""

    p50: float
    p90: float
    p99: float
    mean: float
    n: int

    def as_dict(self) -> dict[str, float]:
        return {key: round(value, 3) if isinstance(value, float) else value for key, value in asdict(self).items()}


def summarize(samples_ms: Sequence[float]) -> LatencyStats:
    """Percentiles by linear interpolation (numpy's default), so p50 of [1, 3] is 2."""
    if len(samples_ms) == 0:
        raise ValueError("summarize: no samples")
    values = np.asarray(samples_ms, dtype=np.float64)
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return LatencyStats(float(p50), float(p90), float(p99), float(values.mean()), int(values.size))
