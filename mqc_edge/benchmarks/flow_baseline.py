"""A floor for every tracker: the frame-0 ground-truth mask carried frame by frame with optical flow.

It is given the answer on frame 0 (semi-supervised, not referring) and knows nothing of the
target, so it drifts with the ground and loses what stops or turns; the demo and the model card
report it beside the model as a BASELINE (`accuracy_eval` variant `flow-gt-mask`).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from mqc_edge.atomic import write_atomically
from mqc_edge.data.dataset import RVOSDataset


def propagate_mask_with_flow(previous_rgb: np.ndarray, rgb: np.ndarray, previous_mask: np.ndarray) -> np.ndarray:
    """Warp `previous_mask` onto `rgb` along DIS optical flow (backward warp: for each pixel of the
    new frame, where it was in the previous one)."""
    flow_engine = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    flow = flow_engine.calc(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cv2.cvtColor(previous_rgb, cv2.COLOR_RGB2GRAY), None)
    height, width = previous_mask.shape
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    warped = cv2.remap(previous_mask.astype(np.float32), grid_x + flow[..., 0], grid_y + flow[..., 1], cv2.INTER_LINEAR)
    return warped >= 0.5


def _save_mask(path: Path, mask: np.ndarray) -> None:
    write_atomically(path, Image.fromarray(mask.astype(np.uint8) * 255).save)


def predict_flow_baseline(dataset: RVOSDataset, pred_root: Path) -> int:
    """Write P/<video>/<exp_id>/<frame>.png for every expression; returns the video frames
    segmented (a frame counts once however many expressions it has, as for the trackers)."""
    segmented = 0
    for video in dataset.videos.values():
        segmented += len(video.frames) if video.expressions else 0
        for expression in video.expressions.values():
            previous_rgb = dataset.read_frame(video.name, video.frames[0])
            mask = dataset.object_mask(video.name, video.frames[0], expression.obj_id)
            _save_mask(pred_root / video.name / expression.exp_id / f"{video.frames[0]}.png", mask)
            for frame in video.frames[1:]:
                rgb = dataset.read_frame(video.name, frame)
                mask = propagate_mask_with_flow(previous_rgb, rgb, mask)
                _save_mask(pred_root / video.name / expression.exp_id / f"{frame}.png", mask)
                previous_rgb = rgb
    return segmented
