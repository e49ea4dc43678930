"""Run a video through the Tracker, one or several objects, and write every output as soon as it is ready.

Layout (runtime/outputs.py names the files): with one object, O/masks/, O/results.jsonl,
O/masks_coco_rle.json (and O/logits/); with K > 1 objects the same files under O/obj<k>/, k = 1..K
in prompt order. O/objects.json maps each object to its folder and prompt; O/overlay.mp4 (optional)
shows every object in its own colour.
"""

from __future__ import annotations

import json
import math
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
from tqdm import tqdm

from mqc_edge.atomic import write_text_atomically
from mqc_edge.errors import BadFrameError
from mqc_edge.runtime.config import TrackerConfig
from mqc_edge.runtime.multi_tracker import MultiTracker
from mqc_edge.runtime.outputs import OverlayVideo, RunWriter
from mqc_edge.runtime.prompts import check_prompts
from mqc_edge.runtime.results import FrameResult

OBJECTS_FILE = "objects.json"
OVERLAY_FILE = "overlay.mp4"


class _ResultSink:
    """Matches results to the frames they came from (names, and pixels for the overlay), writes them."""

    def __init__(self, writers: list[RunWriter], overlay: OverlayVideo | None, bar: tqdm) -> None:
        self.writers, self.overlay, self.bar = writers, overlay, bar
        self.pending: dict[int, tuple[str, np.ndarray | None]] = {}
        self.received_count = 0
        self.written = 0

    def received(self, name: str, rgb: np.ndarray) -> None:
        """Frames wait here until their results come (MQC start-up holds up to n_max of them)."""
        self.pending[self.received_count] = (name, rgb if self.overlay is not None else None)
        self.received_count += 1

    def write(self, per_object: list[list[FrameResult]]) -> None:
        """Every object emits the same frames at the same call, so results are zipped by frame."""
        for results in zip(*per_object, strict=True):
            name, rgb = self.pending.pop(results[0].frame_index)
            for writer, result in zip(self.writers, results):
                writer.write_frame(name, result.mask, _record(result), logits=result.logits)
            if self.overlay is not None:
                self.overlay.write(rgb, [result.mask for result in results])
            self.written += 1
            self.bar.update(1)


def object_folders(out_dir: Path, count: int) -> list[Path]:
    """Where each object's files go: O itself for one object (the single-object layout), else O/obj<k>."""
    out_dir = Path(out_dir)
    return [out_dir] if count == 1 else [out_dir / f"obj{number}" for number in range(1, count + 1)]


def run_video(
    tracker: MultiTracker,
    frames: Iterable[tuple[str, np.ndarray]],
    out_dir: Path,
    prompts: Sequence[Mapping[str, object]],
    save_logits: bool = False,
    progress: bool = False,
    total: int | None = None,
    overlay_fps: float | None = None,
) -> int:
    """Prompt the first (name, RGB frame) with `prompts` (one dict of `Tracker.start` keywords per
    object), track the rest, write each object's outputs and, with `overlay_fps`, O/overlay.mp4.
    Prompt values are checked (`check_prompts`) before anything is written.

    When a frame cannot be read, the frames the tracker still holds (MQC start-up) are flushed
    to disk before the error propagates, so every frame before the failure is written.
    Returns the number of frames written; `progress` shows frames/s on stderr (and an ETA
    when `total`, the frame count, is known).
    """
    check_prompts(prompts)
    folders = object_folders(out_dir, len(prompts))
    _write_objects_file(Path(out_dir), folders, prompts)
    with ExitStack() as stack:
        writers = [stack.enter_context(RunWriter(folder, save_logits=save_logits)) for folder in folders]
        overlay = stack.enter_context(OverlayVideo(Path(out_dir) / OVERLAY_FILE, overlay_fps)) if overlay_fps else None
        bar = stack.enter_context(tqdm(total=total, unit="frame", disable=not progress, file=sys.stderr))
        sink = _ResultSink(writers, overlay, bar)
        try:
            for name, frame in frames:
                sink.received(name, frame)
                sink.write(tracker.step(frame) if tracker.started else tracker.start(frame, prompts))
        except BadFrameError:
            if tracker.started:
                sink.write(tracker.finish())
            raise
        if not tracker.started:
            raise BadFrameError(f"video for {out_dir}: no frames to segment")
        sink.write(tracker.finish())
        return sink.written


def _write_objects_file(out_dir: Path, folders: list[Path], prompts: Sequence[Mapping[str, object]]) -> None:
    """O/objects.json: which folder holds which object, and the prompt that named it."""
    entries = [{"object": number, "folder": str(folder.relative_to(out_dir)), "prompt": _describe(prompt)}
               for number, (folder, prompt) in enumerate(zip(folders, prompts), start=1)]
    write_text_atomically(out_dir / OBJECTS_FILE, json.dumps(entries, indent=1, allow_nan=False) + "\n")


def _describe(prompt: Mapping[str, object]) -> dict[str, object]:
    """JSON-able prompt; a mask prompt is recorded by its foreground pixel count, not its pixels."""
    described: dict[str, object] = {}
    for key, value in prompt.items():
        if key == "mask":
            described["mask_pixels"] = int(np.count_nonzero(value))
        elif value is not None:
            described[key] = np.asarray(value).tolist() if key != "text" else value
    return described


def run_from_checkpoint(
    checkpoint: Path,
    video: Path,
    out_dir: Path,
    prompts: Sequence[Mapping[str, object]],
    mode: str = "mqc",
    backend: str = "torch",
    model_config: str | None = None,
    image_size: int | None = None,
    save_logits: bool = False,
    threads: int | None = None,
    overlay_fps: float | None = None,
) -> tuple[int, str]:
    """`mqc-edge run`: load the model, stream the video's frames through one Tracker per object
    (the image encoder shared), write the outputs with a progress bar. Returns frames written
    and the model's description."""
    from mqc_edge.data.frames import frame_count, iter_frames
    from mqc_edge.runtime.model_source import load_model_source

    source = load_model_source(checkpoint, backend, model_config, image_size, threads=threads)
    tracker = MultiTracker(source.backend, TrackerConfig(mode=mode), tokenizer=source.tokenizer,
                           text_cache=source.text_cache)
    frames = ((frame.name, frame.rgb) for frame in iter_frames(video))
    count = run_video(tracker, frames, out_dir, prompts, save_logits=save_logits, progress=True,
                      total=frame_count(video), overlay_fps=overlay_fps)
    return count, source.description


def _record(result: FrameResult) -> dict:
    """One results.jsonl line; non-finite numbers become null (JSON has no NaN)."""
    return {
        "frame_index": result.frame_index,
        "score": _number(result.iou),
        "object_score": _number(result.object_score),
        "object_present": bool(result.object_present),
        "flags": list(result.flags),
        "quality": {name: _number(value) for name, value in result.quality.items()},
        "timings_ms": {stage: round(ms, 3) for stage, ms in result.timings_ms.items()},
    }


def _number(value: float) -> float | None:
    return round(float(value), 6) if math.isfinite(value) else None
