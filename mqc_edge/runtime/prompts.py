"""User prompts (box, points, mask at frame resolution) -> the prompt_encoder stage's inputs.

As Meta's predictor does (sam2_video_predictor.py `add_new_points_or_box`, `add_new_mask`):
a box becomes two points labelled 2 and 3 placed before any clicks, coordinates are divided
by the frame size and multiplied by S in float32, and SAM's prompt encoder pads one 'no point'
(label -1) at the end. A mask is resized to S x S with antialiased bilinear and thresholded
at 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mqc_edge.contract import ModelGeometry
from mqc_edge.errors import PromptError

BOX_LABELS = (2, 3)
"""SAM's labels for the top-left and bottom-right box corners."""
PAD_LABEL = -1
"""SAM's label for 'no point'."""


@dataclass(frozen=True)
class PointPrompt:
    """prompt_encoder inputs: coords float32 [1, T, 2] in model pixels, labels int32 [1, T]."""

    coords: np.ndarray
    labels: np.ndarray
    num_points: int  # user points + box corners, without padding (decides multimask output)

    @classmethod
    def empty(cls, tokens: int) -> PointPrompt:
        """Only 'no point' tokens: what a tracking frame (or a mask prompt) feeds the decoder."""
        return cls(np.zeros((1, tokens, 2), np.float32), np.full((1, tokens), PAD_LABEL, np.int32), 0)


def point_prompt(
    box: object, points: object, labels: object, frame_size: tuple[int, int], geometry: ModelGeometry
) -> PointPrompt:
    """Box [x0, y0, x1, y1] and/or points [N, 2] with labels [N] (1 object, 0 background),
    in frame pixels -> padded model-pixel prompt."""
    if box is None and points is None:
        raise PromptError("prompt: expected a box, points with labels, or a mask; got none")
    coords, tags = [np.zeros((0, 2), np.float32)], [np.zeros(0, np.int32)]
    if box is not None:
        corners = np.asarray(box, dtype=np.float32)
        if corners.shape != (4,):
            raise PromptError(f"box prompt: expected [x0, y0, x1, y1], got shape {list(corners.shape)}")
        coords.append(corners.reshape(2, 2))
        tags.append(np.array(BOX_LABELS, np.int32))
    if points is not None:
        xy, point_labels = _checked_points(points, labels)
        coords.append(xy)
        tags.append(point_labels)
    height, width = frame_size
    model_xy = np.concatenate(coords) / np.array([width, height], np.float32) * np.float32(geometry.image_size)
    labels_all = np.concatenate(tags)
    return PointPrompt(
        coords=np.concatenate([model_xy, np.zeros((1, 2), np.float32)])[None],
        labels=np.concatenate([labels_all, [PAD_LABEL]]).astype(np.int32)[None],
        num_points=len(labels_all),
    )


def _checked_points(points: object, labels: object) -> tuple[np.ndarray, np.ndarray]:
    xy = np.asarray(points, dtype=np.float32).reshape(-1, 2) if np.size(points) else np.zeros((0, 2), np.float32)
    if labels is None or np.shape(labels) != (len(xy),):
        raise PromptError(f"point prompt: expected {len(xy)} labels for {len(xy)} points, got {labels!r}")
    point_labels = np.asarray(labels, dtype=np.int32)
    if not np.isin(point_labels, (0, 1)).all():
        raise PromptError(f"point labels: expected 0 (background) or 1 (object), got {point_labels.tolist()}")
    return xy, point_labels


def mask_prompt_input(mask: object, frame_size: tuple[int, int], geometry: ModelGeometry) -> np.ndarray:
    """bool [H, W] mask at frame size -> float32 {0, 1} [1, 1, S, S]."""
    mask = np.asarray(mask)
    if mask.shape != frame_size:
        raise PromptError(f"mask prompt: expected shape {list(frame_size)} (the frame), got {list(mask.shape)}")
    if not mask.any():
        raise PromptError("mask prompt: the mask is empty; it must mark the object")
    values = mask.astype(np.float32)
    size = geometry.image_size
    if values.shape != (size, size):
        values = (resize_antialiased(values, size, size) >= 0.5).astype(np.float32)
    return values[None, None]


def _triangle_weights(in_size: int, out_size: int) -> np.ndarray:
    """[out, in] weights of torch's antialiased bilinear resize (PIL's triangle filter)."""
    scale = in_size / out_size
    support = scale if scale >= 1.0 else 1.0
    inv_scale = 1.0 / scale if scale >= 1.0 else 1.0
    weights = np.zeros((out_size, in_size), np.float64)
    for i in range(out_size):
        center = scale * (i + 0.5)
        low = max(int(center - support + 0.5), 0)
        high = min(int(center + support + 0.5), in_size)
        taps = np.arange(low, high)
        w = np.maximum(0.0, 1.0 - np.abs((taps - center + 0.5) * inv_scale))
        weights[i, low:high] = w / w.sum()
    return weights


def resize_antialiased(values: np.ndarray, height: int, width: int) -> np.ndarray:
    """float [h, w] -> [height, width], as `F.interpolate(bilinear, antialias=True)`."""
    rows = _triangle_weights(values.shape[0], height)
    cols = _triangle_weights(values.shape[1], width)
    return (rows @ values.astype(np.float64) @ cols.T).astype(np.float32)
