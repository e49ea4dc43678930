"""A synthetic RS-RVOS dataset on disk: random scenes rendered and written through DatasetWriter.

Video i depends only on (seed, i): its scene and its render seed come from a generator seeded
with [seed, i], so a 50-video set starts with the same 10 videos as a 10-video one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from mqc_edge.data.dataset import DatasetWriter, RVOSDataset
from mqc_edge.data.synth.sampling import random_scene
from mqc_edge.data.synth.scene import SceneRenderer, check_seed
from mqc_edge.errors import ConfigError

MIN_SIZE = 64  # px per side; the CLI enforces the same floor


def video_name(seed: int, index: int) -> str:
    return f"synth_{seed}_{index:04d}"


def _check_arguments(videos: int, frames: int, size: tuple[int, int], seed: int, split: str) -> None:
    check_seed(seed)
    if videos < 1:
        raise ConfigError(f"videos: expected at least 1, got {videos}")
    if frames < 1:
        raise ConfigError(f"frames: expected at least 1, got {frames}")
    if min(size) < MIN_SIZE:
        raise ConfigError(f"size: expected at least {MIN_SIZE}x{MIN_SIZE}, got {size[0]}x{size[1]}")
    if split not in ("train", "test"):
        raise ConfigError(f"split: expected 'train' or 'test', got {split!r}")


def write_video(writer: DatasetWriter, name: str, renderer: SceneRenderer, frames: int) -> None:
    """Stream frames to disk (memory stays one frame) and add the expressions made from frame 0."""
    for t in range(frames):
        rgb, ids = renderer.frame(t)
        writer.write_frame(name, f"{t:05d}", rgb, ids)
        if t == 0:
            for expression in renderer.expressions(ids):
                writer.add_expression(
                    name, expression.exp_id, expression.text, expression.obj_id, expression.category
                )


def generate_dataset(out: Path, videos: int, frames: int, size: tuple[int, int], seed: int, split: str = "test",
                     degrade: bool = False, target_scale: float = 1.0) -> RVOSDataset:
    """Write `videos` random videos of `frames` frames and `size` = (width, height) under `out`;
    `target_scale` < 1 makes the targets that much shorter (tiny-target sets, `run --roi`)."""
    _check_arguments(videos, frames, size, seed, split)
    if not 0 < target_scale <= 1:
        raise ConfigError(f"target scale: expected 0 < scale <= 1, got {target_scale}")
    writer = DatasetWriter(Path(out))
    for index in tqdm(range(videos), desc="synth", unit="video"):
        rng = np.random.default_rng([seed, index])
        scene = random_scene(rng, size, frames, degrade, target_scale)
        renderer = SceneRenderer(scene, int(rng.integers(2**31)))
        write_video(writer, video_name(seed, index), renderer, frames)
    return writer.close(split)
