"""`mqc-edge demo`: generate a satellite-like clip set, segment it, score it with J&F.

Until a trained default MQC-SAM model ships (a later issue), the segmenter is a plain
optical-flow BASELINE: the ground-truth mask of frame 0 is carried forward frame by frame with
OpenCV's DIS flow. It needs the frame-0 mask (semi-supervised, not referring), so its numbers
are a floor for the pipeline, not a result of the model; the demo says so in its output.
"""

from __future__ import annotations

import time
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
    """Write P/<video>/<exp_id>/<frame>.png for every expression; returns frames segmented."""
    segmented = 0
    for video in dataset.videos.values():
        for expression in video.expressions.values():
            previous_rgb = dataset.read_frame(video.name, video.frames[0])
            mask = dataset.object_mask(video.name, video.frames[0], expression.obj_id)
            _save_mask(pred_root / video.name / expression.exp_id / f"{video.frames[0]}.png", mask)
            for frame in video.frames[1:]:
                rgb = dataset.read_frame(video.name, frame)
                mask = propagate_mask_with_flow(previous_rgb, rgb, mask)
                _save_mask(pred_root / video.name / expression.exp_id / f"{frame}.png", mask)
                previous_rgb = rgb
                segmented += 1
    return segmented


def run_demo(out_dir: Path, videos: int, frames: int, size: tuple[int, int], seed: int) -> dict:
    """Generate data, run the baseline, evaluate; returns the metrics report."""
    from mqc_edge.data.evaluate import evaluate_predictions, format_table
    from mqc_edge.data.synth import generate_dataset

    out_dir = Path(out_dir)
    started = time.perf_counter()
    dataset = generate_dataset(
        out=out_dir / "data", videos=videos, frames=frames, size=size, seed=seed, split="test", degrade=False
    )
    print(f"[1/3] generated {videos} synthetic satellite videos x {frames} frames at {size[0]}x{size[1]} "
          f"in {time.perf_counter() - started:.1f} s -> {out_dir / 'data'}")
    started = time.perf_counter()
    segmented = predict_flow_baseline(dataset, out_dir / "pred")
    elapsed = time.perf_counter() - started
    print(f"[2/3] BASELINE segmenter (frame-0 ground-truth mask carried by DIS optical flow; no trained "
          f"MQC-SAM model ships yet): {segmented} frames in {elapsed:.1f} s ({segmented / max(elapsed, 1e-9):.1f} frames/s)")
    report = evaluate_predictions(pred_root=out_dir / "pred", gt_root=out_dir / "data", out_dir=out_dir / "report")
    print("[3/3] J&F (DAVIS protocol, referring setting) of the baseline:")
    print(format_table(report))
    print(f"report: {out_dir / 'report' / 'metrics.json'}")
    return report
