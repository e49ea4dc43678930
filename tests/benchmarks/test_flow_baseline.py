"""The flow baseline follows a translating target (it is the floor the model card compares with)."""

import cv2
import numpy as np

from mqc_edge.benchmarks.flow_baseline import propagate_mask_with_flow


def _textured_scene(offset: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    ground = cv2.GaussianBlur(rng.integers(60, 120, (96, 96), dtype=np.uint8), (5, 5), 0)
    patch = rng.integers(150, 255, (16, 16), dtype=np.uint8)
    frame = ground.copy()
    frame[40:56, 20 + offset : 36 + offset] = patch
    mask = np.zeros((96, 96), bool)
    mask[40:56, 20 + offset : 36 + offset] = True
    return np.repeat(frame[:, :, None], 3, axis=2), mask


def test_flow_baseline_follows_a_translating_target():
    previous_rgb, mask = _textured_scene(0)
    for offset in (3, 6, 9):
        rgb, truth = _textured_scene(offset)
        mask = propagate_mask_with_flow(previous_rgb, rgb, mask)
        previous_rgb = rgb
    iou = (mask & truth).sum() / (mask | truth).sum()
    _, start = _textured_scene(0)
    assert iou > 0.8
    assert iou > (start & truth).sum() / (start | truth).sum() + 0.3  # better than standing still
