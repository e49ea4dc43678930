"""Meta's `SAM2VideoPredictor` beside our constant-memory soak (issue 13 item 5): how its memory grows.

Meta's predictor reads a JPEG folder, loads every frame at `init_state` and keeps every frame's
outputs in its `inference_state` while it propagates, so its resident memory grows with the video.
The soak streams the same synthetic frames through it, up to a stated frame cap since it is far
slower than our Tracker, and samples the resident set before and after `init_state` and every
`every` frames of `propagate_in_video`. Yielded masks are dropped at once, as a user streaming
results to disk would; what still grows is the predictor's own.

torch and sam2 are imported inside `meta_memory` only: the soak of our runtime stays torch-free.
"""

from __future__ import annotations

import tempfile
import time
import warnings
from pathlib import Path
from typing import Iterable

import numpy as np

from mqc_edge.benchmarks.memory import resident_bytes
from mqc_edge.data.dataset import DatasetWriter


def meta_memory(export_dir: Path, frames: Iterable[np.ndarray], box: tuple[float, float, float, float],
                every: int, threads: int) -> dict:
    """The report's "meta" block: Meta's predictor, built from the export's SAM 2.1 weights at the
    export's image size, prompted with `box` on frame 0 and propagated over `frames`."""
    import torch

    from mqc_edge.benchmarks.meta_predictor import build_meta_predictor, meta_checkpoint
    from mqc_edge.runtime.manifest import load_manifest

    torch.set_num_threads(threads)
    manifest = load_manifest(export_dir)
    with tempfile.TemporaryDirectory(prefix="meta_soak_") as scratch:
        folder = _write_jpegs(frames, Path(scratch))
        checkpoint = meta_checkpoint(manifest.file("weights"), Path(scratch) / "meta_sam2.pt")
        predictor = build_meta_predictor(checkpoint, manifest.content["model"]["sam2_variant"],
                                         manifest.geometry.image_size)
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")
            return _stream(predictor, folder, box, every)


def _write_jpegs(frames: Iterable[np.ndarray], root: Path) -> Path:
    """Meta's predictor only reads folders of numbered JPEGs; the same writer as the benchmark clips."""
    writer = DatasetWriter(root)
    for index, rgb in enumerate(frames):
        writer.write_frame("soak", f"{index:05d}", rgb)
    return root / "JPEGImages" / "soak"


def _stream(predictor, folder: Path, box: tuple[float, float, float, float], every: int) -> dict:
    """init_state, the box on frame 0, then propagate, sampling the resident set as it goes."""
    before_init = resident_bytes()
    state = predictor.init_state(str(folder))
    after_init = resident_bytes()
    predictor.add_new_points_or_box(state, frame_idx=0, obj_id=1, box=list(box))
    total, samples, began = state["num_frames"], [], time.perf_counter()
    for frame_idx, _, _ in predictor.propagate_in_video(state):
        if (frame_idx + 1) % every == 0 or frame_idx + 1 == total:
            samples.append({"frame": frame_idx + 1, "resident_bytes": resident_bytes()})
    seconds = time.perf_counter() - began
    return _summary(samples, before_init, after_init, total, seconds)


def _summary(samples: list[dict], before_init: int, after_init: int, frames: int, seconds: float) -> dict:
    """Growth per 1000 frames is the least-squares slope over the propagation samples: init_state's
    one-off load of every frame is reported apart, so the slope is what each further frame costs."""
    mib = np.array([sample["resident_bytes"] for sample in samples], np.float64) / 2**20
    slope = np.polyfit([sample["frame"] for sample in samples], mib, 1)[0]
    return {
        "frames": frames,
        "samples": samples,
        "before_init_resident_mib": before_init / 2**20,
        "after_init_resident_mib": after_init / 2**20,
        "final_resident_mib": float(mib[-1]),
        "growth_mib_per_1000_frames": float(1e3 * slope),
        "ms_per_frame": 1e3 * seconds / frames,  # propagate_in_video only: init_state and the prompt apart
    }
