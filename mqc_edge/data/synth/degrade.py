"""Time-varying degradations applied to a finished frame; masks are untouched (the object is still there).

The kinds follow the degradation suite of RobustPVOS/MoGA (DESIGN.md section 7): blur, haze,
low light and sensor noise, each with its own phase so that a video passes through clean,
single-kind and mixed stretches.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from mqc_edge.data.synth.spec import Degradation

HAZE_GREY = np.float32(205.0)


def strengths(spec: Degradation, t: int) -> tuple[float, float, float, float]:
    """(blur, haze, darkness, noise) multipliers in 0..1 at frame t."""
    base = 2.0 * math.pi * t / spec.period + spec.phase
    return tuple(0.5 - 0.5 * math.cos(base + kind * math.pi / 2) for kind in range(4))  # type: ignore[return-value]


def degrade(canvas: np.ndarray, spec: Degradation, t: int, rng: np.random.Generator) -> np.ndarray:
    """Haze, blur, low light, noise: the order in which atmosphere, optics, exposure and sensor act."""
    blur, haze, darkness, noise = strengths(spec, t)
    canvas = canvas * (1.0 - spec.haze * haze) + HAZE_GREY * (spec.haze * haze)
    sigma = spec.blur_sigma * blur
    if sigma >= 0.3:
        canvas = cv2.GaussianBlur(canvas, (0, 0), sigma)
    canvas *= 1.0 - spec.darkness * darkness
    if spec.noise_sigma * noise > 0:
        canvas += (spec.noise_sigma * noise) * rng.standard_normal(canvas.shape, dtype=np.float32)
    return canvas
