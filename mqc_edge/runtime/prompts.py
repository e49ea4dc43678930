"""User prompts (box, points, mask at frame resolution) -> the prompt_encoder stage's inputs.

As Meta's predictor does (sam2_video_predictor.py `add_new_points_or_box`, `add_new_mask`):
a box becomes two points labelled 2 and 3 placed before any clicks, coordinates are divided
by the frame size and multiplied by S in float32, and SAM's prompt encoder pads one 'no point'
(label -1) at the end. A mask is resized to S x S with antialiased bilinear and thresholded
at 0.5. Unlike Meta's predictor, every value is checked first (`check_prompts` needs no frame,
`point_prompt` checks against the frame): a NaN box would otherwise run to empty masks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

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
    in frame pixels -> padded model-pixel prompt.

    The frame spans [0, W] x [0, H] pixels. A box reaching past it is clipped to it (detections
    often overhang the edge, and SAM's prompt encoder was trained on boxes inside the image); a
    box wholly outside it, and any point outside it, is a PromptError (swapped x and y, or
    coordinates in other units).
    """
    if box is None and points is None:
        raise PromptError("prompt: expected a box, points with labels, or a mask; got none")
    coords, tags = [np.zeros((0, 2), np.float32)], [np.zeros(0, np.int32)]
    if box is not None:
        coords.append(_box_in_frame(checked_box(box), frame_size).reshape(2, 2))
        tags.append(np.array(BOX_LABELS, np.int32))
    if points is not None:
        xy, point_labels = checked_points(points, labels)
        coords.append(_points_in_frame(xy, frame_size))
        tags.append(point_labels)
    height, width = frame_size
    model_xy = np.concatenate(coords) / np.array([width, height], np.float32) * np.float32(geometry.image_size)
    labels_all = np.concatenate(tags)
    return PointPrompt(
        coords=np.concatenate([model_xy, np.zeros((1, 2), np.float32)])[None],
        labels=np.concatenate([labels_all, [PAD_LABEL]]).astype(np.int32)[None],
        num_points=len(labels_all),
    )


def check_prompts(prompts: Sequence[Mapping[str, object]]) -> None:
    """Every check that needs no frame, for each object's prompt (`Tracker.start` keywords), so
    that a bad value stops a run before its first frame and before it is recorded anywhere."""
    for number, prompt in enumerate(prompts, start=1):
        try:
            if prompt.get("box") is not None:
                checked_box(prompt["box"])
            if prompt.get("points") is not None:
                checked_points(prompt["points"], prompt.get("labels"))
            if prompt.get("mask") is not None:
                checked_mask(prompt["mask"])
        except PromptError as error:
            raise PromptError(f"object {number} {error}") from None


def checked_box(box: object) -> np.ndarray:
    """[x0, y0, x1, y1] in pixels -> float32 [4]; PromptError unless finite with x0 < x1 and y0 < y1."""
    corners = _numbers(box, "box prompt")
    if corners.shape != (4,):
        raise PromptError(f"box prompt: expected [x0, y0, x1, y1], got shape {list(corners.shape)}")
    if not np.isfinite(corners).all():
        raise PromptError(f"box prompt: expected finite x0 y0 x1 y1, got {corners.tolist()}")
    if corners[2] <= corners[0] or corners[3] <= corners[1]:
        raise PromptError(f"box prompt: expected x0 < x1 and y0 < y1, got {corners.tolist()}")
    return corners.astype(np.float32)


def checked_points(points: object, labels: object) -> tuple[np.ndarray, np.ndarray]:
    """Points [N, 2] (x, y pixels) and labels [N] -> float32 [N, 2], int32 [N]; PromptError unless
    every coordinate is finite and every label is 0 (background) or 1 (object)."""
    xy = _numbers(points, "point prompt")
    if xy.size % 2:
        raise PromptError(f"point prompt: expected [N, 2] x, y pairs, got shape {list(xy.shape)}")
    xy = xy.reshape(-1, 2)
    if labels is None or np.shape(labels) != (len(xy),):
        raise PromptError(f"point prompt: expected {len(xy)} labels for {len(xy)} points, got {labels!r}")
    if not np.isfinite(xy).all():
        raise PromptError(f"point prompt: expected finite x, y, got {xy.tolist()}")
    point_labels = np.asarray(labels, dtype=np.int32)
    if not np.isin(point_labels, (0, 1)).all():
        raise PromptError(f"point labels: expected 0 (background) or 1 (object), got {point_labels.tolist()}")
    return xy.astype(np.float32), point_labels


def checked_mask(mask: object) -> np.ndarray:
    """A mask prompt -> bool [H, W]; PromptError for another rank, values other than 0 and 1 (NaN
    included) or an empty mask."""
    values = np.asarray(mask)
    if values.ndim != 2:
        raise PromptError(f"mask prompt: expected [H, W], got shape {list(values.shape)}")
    if values.dtype != bool:
        stray = values[~np.isin(values, (0, 1))]
        if stray.size:
            raise PromptError(f"mask prompt: expected bool or 0/1 values, "
                              f"got {values.dtype} value {stray.flat[0].item()!r}")
    if not values.any():
        raise PromptError("mask prompt: the mask is empty; it must mark the object")
    return values.astype(bool)


def _numbers(values: object, what: str) -> np.ndarray:
    """float64 array of a prompt's coordinates (checked before the float32 the model sees)."""
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise PromptError(f"{what}: expected numbers, got {values!r}") from None


def _box_in_frame(corners: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
    """The box clipped to the frame; PromptError when nothing of it is left."""
    height, width = frame_size
    clipped = np.clip(corners, 0, np.array([width, height, width, height], np.float32))
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        raise PromptError(f"box prompt: {corners.tolist()} lies outside the {width}x{height} frame")
    return clipped


def _points_in_frame(xy: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
    """The points unchanged; PromptError naming the first one outside [0, W] x [0, H]."""
    height, width = frame_size
    outside = (xy < 0).any(axis=1) | (xy[:, 0] > width) | (xy[:, 1] > height)
    if outside.any():
        raise PromptError(f"point prompt: {xy[outside][0].tolist()} lies outside the {width}x{height} frame "
                          f"(x in [0, {width}], y in [0, {height}])")
    return xy


def mask_prompt_input(mask: object, frame_size: tuple[int, int], geometry: ModelGeometry) -> np.ndarray:
    """bool (or 0/1) [H, W] mask at frame size -> float32 {0, 1} [1, 1, S, S]."""
    mask = checked_mask(mask)
    if mask.shape != tuple(frame_size):
        raise PromptError(f"mask prompt: expected shape {list(frame_size)} (the frame), got {list(mask.shape)}")
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
