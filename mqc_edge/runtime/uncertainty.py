"""What the Tracker does with the CroBIM-U uncertainty map (stage `uncertainty_head`): a boundary
score per frame, and the uncertainty-weighted mask a DAMI memory write can take. Torch-free.

The head's u is the predicted probability that a pixel of the thresholded mask is wrong
(model/uncertainty.py), at the low-res (stride 4) grid of the mask logits.
"""

from __future__ import annotations

import cv2
import numpy as np

MEMORY_LOGIT_CLAMP = 20.0
"""Weighted logits are clamped to +-20: sigmoid(+-20) is within 2e-9 of 0 or 1, and the memory
encoder's sigmoid saturates there anyway."""


def boundary_band(mask: np.ndarray, width: int) -> np.ndarray:
    """bool [h, w]: the dilation minus the erosion of a bool mask by a (2 width + 1)^2 square, i.e.
    the pixels within `width` px (Chebyshev) of the mask's boundary, on both sides. Pixels outside
    the image count as background. ValueError for width < 1."""
    if width < 1:
        raise ValueError(f"boundary band: expected width >= 1 px, got {width}")
    kernel = np.ones((2 * width + 1, 2 * width + 1), np.uint8)
    mask8 = mask.astype(np.uint8)
    dilated = cv2.dilate(mask8, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    eroded = cv2.erode(mask8, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return (dilated > 0) & ~(eroded > 0)


def boundary_uncertainty(uncertainty: np.ndarray, logits: np.ndarray, width: int) -> float:
    """Mean uncertainty over the boundary band (`boundary_band`, `width` low-res px) of the mask
    logits > 0; over the whole frame when the mask is empty (no boundary to score). Both float32
    [h, w] on the same grid."""
    if uncertainty.shape != logits.shape:
        raise ValueError(f"boundary uncertainty: uncertainty {uncertainty.shape} and logits {logits.shape} differ")
    mask = logits > 0
    if not mask.any():
        return float(uncertainty.mean())
    return float(uncertainty[boundary_band(mask, width)].mean())


def uncertainty_weighted_logits(logits: np.ndarray, uncertainty: np.ndarray) -> np.ndarray:
    """float32 [h, w] logits whose sigmoid is sigmoid(logits) * (1 - u): the memory encoder, which
    squashes its mask input with a sigmoid (SAM 2's confidence weighting), then reads the mask
    weighted by the head's confidence 1 - u instead (CroBIM-U; DESIGN section 5 step 4)."""
    x = np.clip(logits.astype(np.float64), -MEMORY_LOGIT_CLAMP, MEMORY_LOGIT_CLAMP)
    probability = 0.5 * (1.0 + np.tanh(0.5 * x)) * (1.0 - np.clip(uncertainty, 0.0, 1.0))
    probability = np.clip(probability, 1e-9, 1.0 - 1e-9)
    logits_out = np.log(probability) - np.log1p(-probability)
    return np.clip(logits_out, -MEMORY_LOGIT_CLAMP, MEMORY_LOGIT_CLAMP).astype(np.float32)
