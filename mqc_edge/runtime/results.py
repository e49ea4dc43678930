"""What the Tracker hands out per frame."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class FrameResult:
    """One frame's output at frame resolution, plus what the Tracker read and decided to make it."""

    frame_index: int
    logits: np.ndarray  # float32 [H, W] mask logits at frame size (the decoder's, before TMCC)
    mask: np.ndarray  # bool [H, W]: logits > 0, except on a TMCC-calibrated frame 0 (the calibrated mask)
    logits_lowres: np.ndarray  # float32 [S/4, S/4] after hole filling
    object_score: float  # object presence logit (> 0: present)
    iou: float  # the decoder's predicted IoU of the chosen mask
    timings_ms: dict[str, float] = field(default_factory=dict)  # per stage, plus pre/postprocess
    flags: tuple[str, ...] = ()  # what fired: e.g. "fifo_write", "ambiguous", "tmcc_stationary", "nonfinite"
    quality: dict[str, float] = field(default_factory=dict)  # gate statistics: innovation G, KL, s_t, TMCC window
    roi: tuple[int, int, int, int] | str | None = None  # --roi auto: crop window (x0, y0, x1, y1) frame px or "full"
    uncertainty: np.ndarray | None = None  # float32 [H, W] in [0, 1]: CroBIM-U P(pixel wrong); None: no head
    boundary_uncertainty: float | None = None  # mean low-res u in the mask's boundary band (runtime/uncertainty.py)

    @property
    def object_present(self) -> bool:
        return self.object_score > 0
