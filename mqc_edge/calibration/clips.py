"""Prompted clips for calibration and for the accuracy gate: generated, from a dataset, or a
folder of frames.

A clip is frames plus how its object is prompted on frame 0 (a box for SAM 2 mode, a text for
MQC mode) and, where known, its ground truth (for J&F). Generated clips follow the seed
convention of training/clips.py: seeds below 1e6 are held out from training, and calibration
and gate use different seeds, so the gate never scores the frames the scales came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mqc_edge.data.dataset import RVOSDataset
from mqc_edge.data.frames import iter_frames
from mqc_edge.data.synth import random_scene, render_video
from mqc_edge.errors import ConfigError

CALIBRATION_SEED = 800_001
"""Generated calibration clips (below 1e6: never a training scene, training/clips.py)."""
GATE_SEED = 700_001
"""Generated held-out clips of the accuracy gate (below 1e6, and not the calibration seed)."""
MIN_OBJECT_PIXELS = 16
"""A prompted object covers at least this many frame-0 pixels (one low-res mask cell at 256 px)."""


@dataclass(frozen=True)
class PromptedClip:
    """Frames and the frame-0 prompt of one object."""

    name: str
    frames: list[np.ndarray]  # uint8 [H, W, 3] RGB
    box: np.ndarray  # float32 [4] x0 y0 x1 y1 in frame pixels (SAM 2 mode prompt)
    text: str | None  # referring expression (MQC mode prompt); None: a frame folder has none
    truth: np.ndarray | None  # bool [T, H, W] the object's ground truth; None: unknown


@dataclass(frozen=True)
class ClipSet:
    """Where clips come from: `source` None = generated; else a frame folder or an RVOS dataset."""

    source: Path | None = None
    clips: int = 4  # generated clips, or dataset expressions (first N in name order)
    frames: int = 16  # frames per clip (issue 20: 4 clips x 16 frames)
    size: int | None = None  # generated frame side; None: the model's image size
    seed: int = GATE_SEED  # generated clips only


def load_clips(clip_set: ClipSet, image_size: int) -> list[PromptedClip]:
    """The clips of `clip_set`; a generated set is rendered at `clip_set.size` or the model size."""
    source = clip_set.source
    if source is None:
        return synthetic_clips(clip_set.clips, clip_set.frames, clip_set.size or image_size, clip_set.seed)
    if (Path(source) / "meta_expressions.json").is_file():
        return dataset_clips(Path(source), clip_set.clips, clip_set.frames)
    if Path(source).is_dir():
        return [folder_clip(Path(source), clip_set.frames)]
    raise ConfigError(f"calibration source {source}: expected a frame folder or an `mqc-edge data synth` dataset")


def synthetic_clips(count: int, frames: int, size: int, seed: int) -> list[PromptedClip]:
    """Clip i depends only on (seed, i); its object is the first frame-0 referent big enough to prompt."""
    clips = []
    for index in range(count):
        for attempt in range(100):
            rng = np.random.default_rng([seed, index, attempt])
            video = render_video(random_scene(rng, (size, size), frames), frames, int(rng.integers(2**31)))
            referents = [e for e in video.expressions
                         if np.count_nonzero(video.id_masks[0] == e.obj_id) >= MIN_OBJECT_PIXELS]
            if referents:
                truth = np.stack([ids == referents[0].obj_id for ids in video.id_masks])
                clips.append(PromptedClip(f"synth-{seed}-{index}", video.frames, box_of(truth[0]),
                                          referents[0].text, truth))
                break
        else:
            raise ConfigError(f"generated clip {index} of seed {seed}: no referable object in 100 scenes")
    return clips


def dataset_clips(root: Path, count: int, frames: int) -> list[PromptedClip]:
    """The first `count` expressions (by video, then expression id) whose object is on frame 0."""
    dataset = RVOSDataset.load(root)
    clips = []
    for name in sorted(dataset.videos):
        video = dataset.videos[name]
        names = video.frames[:frames]
        for exp_id in sorted(video.expressions):
            expression = video.expressions[exp_id]
            truth = np.stack([dataset.object_mask(name, frame, expression.obj_id) for frame in names])
            if np.count_nonzero(truth[0]) < MIN_OBJECT_PIXELS or len(clips) >= count:
                continue
            rgb = [dataset.read_frame(name, frame) for frame in names]
            clips.append(PromptedClip(f"{name}/{exp_id}", rgb, box_of(truth[0]), expression.text, truth))
    if not clips:
        raise ConfigError(f"dataset {root}: no expression whose object is visible on its first frame")
    return clips


def folder_clip(folder: Path, frames: int) -> PromptedClip:
    """A frame folder has no prompt: the central half of the frame is the box, and no text."""
    rgb = [frame.rgb for _, frame in zip(range(frames), iter_frames(folder))]
    if not rgb:
        raise ConfigError(f"frame folder {folder}: no frames")
    height, width = rgb[0].shape[:2]
    box = np.array([width / 4, height / 4, 3 * width / 4, 3 * height / 4], np.float32)
    return PromptedClip(folder.name, rgb, box, None, None)


def box_of(mask: np.ndarray) -> np.ndarray:
    """float32 [4] x0 y0 x1 y1 of a bool mask (inclusive pixel corners, as the parity clip's box)."""
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()], np.float32)
