"""The clip every contestant of one benchmark sees: the same JPEG files, the same box."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mqc_edge.data.dataset import DatasetWriter
from mqc_edge.data.frames import iter_frames
from mqc_edge.data.synth import random_scene, render_video
from mqc_edge.errors import ConfigError


Box = tuple[float, float, float, float]
"""x0, y0, x1, y1 in frame pixels (SAM's convention: x1/y1 exclusive)."""


@dataclass(frozen=True)
class BenchClip:
    folder: Path  # JPEGs named 00000.jpg ... (Meta's predictor reads the folder)
    frames: list[np.ndarray]  # the same JPEGs decoded, uint8 RGB (our contestants read these)
    boxes: list[Box]  # per object visible on frame 0, referred targets first


def box_of(mask: np.ndarray) -> tuple[float, float, float, float]:
    """Tight box in SAM's convention: pixel corners, x1/y1 exclusive."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        raise ConfigError("benchmark clip: the prompted object is not visible on frame 0")
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


def synthetic_clip(folder: Path, frames: int, size: int, seed: int) -> BenchClip:
    """A generated satellite-like clip; prompt boxes are every object's on frame 0, referred
    targets first (benchmarks with K objects take the first K)."""
    rng = np.random.default_rng(seed)
    video = render_video(random_scene(rng, (size, size), frames), frames=frames, seed=seed)
    referred = [expression.obj_id for expression in video.expressions]
    others = [obj_id for obj_id in np.unique(video.id_masks[0]) if obj_id and obj_id not in referred]
    writer = DatasetWriter(folder)
    for index, rgb in enumerate(video.frames):
        writer.write_frame("clip", f"{index:05d}", rgb)
    jpegs = folder / "JPEGImages" / "clip"
    decoded = [frame.rgb for frame in iter_frames(jpegs)]
    return BenchClip(jpegs, decoded, [box_of(video.id_masks[0] == obj_id) for obj_id in referred + others])


def video_clip(folder: Path, video: Path, frames: int, boxes: list[tuple[float, float, float, float]]) -> BenchClip:
    """The first `frames` frames of a user's video, re-encoded as JPEGs for Meta's predictor."""
    writer = DatasetWriter(folder)
    for index, frame in enumerate(iter_frames(video)):
        if index == frames:
            break
        writer.write_frame("clip", f"{index:05d}", frame.rgb)
    jpegs = folder / "JPEGImages" / "clip"
    return BenchClip(jpegs, [frame.rgb for frame in iter_frames(jpegs)], boxes)


def prompt_boxes(boxes: list[Box], count: int, frame_size: tuple[int, int]) -> list[Box]:
    """`count` prompts: the clip's objects in order, then, when it has fewer, the same boxes
    again grown by 2 px a side per round (distinct prompts around a real object), kept inside
    the (H, W) frame."""
    if not boxes:
        raise ConfigError("benchmark clip: no object to prompt on frame 0")
    height, width = frame_size
    prompts = []
    for index in range(count):
        x0, y0, x1, y1 = boxes[index % len(boxes)]
        grow = 2.0 * (index // len(boxes))
        prompts.append((max(x0 - grow, 0.0), max(y0 - grow, 0.0), min(x1 + grow, width), min(y1 + grow, height)))
    return prompts
