"""DAVIS 2017 region similarity J, boundary measure F, and their recall and decay.

The definitions follow the DAVIS 2017 evaluation toolkit (Pont-Tuset et al., 2017), so our
numbers compare with published RVOS results; numpy and OpenCV only, so the runtime image can
score itself on board. Pixel counts are integers from `np.count_nonzero` (Python ints, never
uint8/uint16 sums), and bin edges are int64, so any mask size and any video length is exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

BOUNDARY_FRACTION = 0.008
"""DAVIS tolerance: boundary pixels match within ceil(0.008 * image diagonal) pixels."""

RECALL_THRESHOLD = 0.5
"""DAVIS recall counts the frames whose J (or F) exceeds 0.5."""

DECAY_BINS = 4
"""DAVIS decay compares the first and the last of 4 temporal bins."""


def _check_pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if pred.ndim != 2 or pred.shape != gt.shape:
        raise ValueError(f"masks must be 2-D and of one shape: prediction {pred.shape}, ground truth {gt.shape}")
    return pred.astype(bool, copy=False), gt.astype(bool, copy=False)


def region_similarity(pred: np.ndarray, gt: np.ndarray) -> float:
    """J: intersection over union; DAVIS scores two empty masks as a perfect 1."""
    pred, gt = _check_pair(pred, gt)
    union = np.count_nonzero(pred | gt)
    if union == 0:
        return 1.0
    return np.count_nonzero(pred & gt) / union


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """One-pixel-wide boundary, as DAVIS's `seg2bmap`: bool [H, W].

    A pixel is on the boundary when it differs from an existing right, bottom or bottom-right
    neighbour. Neighbours outside the image do not exist, so the image border is never a
    boundary by itself: a mask covering the whole frame has no boundary at all.
    """
    mask = mask.astype(bool, copy=False)
    boundary = np.zeros_like(mask)
    boundary[:, :-1] |= mask[:, :-1] != mask[:, 1:]
    boundary[:-1, :] |= mask[:-1, :] != mask[1:, :]
    boundary[:-1, :-1] |= mask[:-1, :-1] != mask[1:, 1:]
    return boundary


def disk(radius: int) -> np.ndarray:
    """Structuring element {(x, y): x^2 + y^2 <= r^2}, uint8 [2r+1, 2r+1] (skimage's `disk`)."""
    offsets = np.arange(-radius, radius + 1)
    return (offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius**2).astype(np.uint8)


def boundary_tolerance(shape: tuple[int, int]) -> int:
    """DAVIS tolerance in pixels for an image of `shape` (H, W): ceil(0.008 * diagonal)."""
    return math.ceil(BOUNDARY_FRACTION * math.hypot(shape[0], shape[1]))


def _matched(boundary: np.ndarray, other_dilated: np.ndarray) -> int:
    return np.count_nonzero(boundary & other_dilated)


def boundary_f(pred: np.ndarray, gt: np.ndarray, tolerance_px: int | None = None) -> float:
    """F: harmonic mean of boundary precision and recall within `tolerance_px` (DAVIS default).

    Empty boundary sets follow DAVIS exactly: none on either side gives P = R = 1 (F = 1); no
    predicted boundary against a real one gives P = 1, R = 0; a predicted boundary against none
    gives P = 0, R = 1; both of the latter make F = 0. The test is on boundaries, not masks, so
    a mask filling the frame counts as having none.
    """
    pred, gt = _check_pair(pred, gt)
    radius = boundary_tolerance(gt.shape) if tolerance_px is None else tolerance_px
    pred_boundary, gt_boundary = boundary_map(pred), boundary_map(gt)
    n_pred, n_gt = np.count_nonzero(pred_boundary), np.count_nonzero(gt_boundary)
    if n_pred == 0 or n_gt == 0:
        return 1.0 if n_pred == n_gt else 0.0
    kernel = disk(radius)
    gt_dilated = cv2.dilate(gt_boundary.astype(np.uint8), kernel).astype(bool)
    pred_dilated = cv2.dilate(pred_boundary.astype(np.uint8), kernel).astype(bool)
    precision = _matched(pred_boundary, gt_dilated) / n_pred
    recall = _matched(gt_boundary, pred_dilated) / n_gt
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


@dataclass(frozen=True)
class SequenceStats:
    """DAVIS statistics of one per-frame series (J or F) of one object."""

    mean: float  # over the series' frames
    recall: float  # fraction of frames above RECALL_THRESHOLD
    decay: float  # mean of the first temporal bin minus mean of the last


def decay_bin_edges(n_frames: int) -> np.ndarray:
    """int64 [5]: bin k covers frames edges[k]..edges[k+1], both ends included.

    DAVIS places the edges at k * (n - 1) / 4 rounded half up, so neighbouring bins share
    their edge frame and a short series still fills every bin. Integer arithmetic keeps the
    edges exact for any length (DAVIS's own code casts them to uint8, which wraps past 255).
    """
    steps = np.arange(DECAY_BINS + 1, dtype=np.int64)
    return (2 * steps * (n_frames - 1) + DECAY_BINS) // (2 * DECAY_BINS)


def sequence_stats(per_frame: np.ndarray) -> SequenceStats:
    """Mean, recall and decay of a per-frame series (DAVIS `db_statistics`)."""
    values = np.asarray(per_frame, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"per-frame values must be a non-empty 1-D series, got shape {values.shape}")
    edges = decay_bin_edges(values.size)
    first = values[edges[0] : edges[1] + 1]
    last = values[edges[-2] : edges[-1] + 1]
    return SequenceStats(
        mean=float(values.mean()),
        recall=float(np.count_nonzero(values > RECALL_THRESHOLD) / values.size),
        decay=float(first.mean() - last.mean()),
    )
