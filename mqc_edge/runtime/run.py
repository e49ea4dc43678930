"""Run a Tracker over a whole video and write every output as soon as it is ready."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Iterable

import numpy as np
from tqdm import tqdm

from mqc_edge.errors import BadFrameError
from mqc_edge.runtime.outputs import RunWriter
from mqc_edge.runtime.config import TrackerConfig
from mqc_edge.runtime.results import FrameResult
from mqc_edge.runtime.tracker import Tracker


class _ResultSink:
    """Matches results to the names of the frames they came from, writes them, counts them."""

    def __init__(self, writer: RunWriter, bar: tqdm) -> None:
        self.writer, self.bar = writer, bar
        self.pending_names: dict[int, str] = {}
        self.written = 0

    def received(self, name: str) -> None:
        self.pending_names[self.written + len(self.pending_names)] = name

    def write(self, results: list[FrameResult]) -> None:
        for result in results:
            name = self.pending_names.pop(result.frame_index)
            self.writer.write_frame(name, result.mask, _record(result), logits=result.logits)
            self.written += 1
            self.bar.update(1)


def run_video(
    tracker: Tracker,
    frames: Iterable[tuple[str, np.ndarray]],
    out_dir: Path,
    save_logits: bool = False,
    progress: bool = False,
    **prompt: object,
) -> int:
    """Prompt the first (name, RGB frame) with `prompt` (text / box / points+labels / mask), track
    the rest; writes O/masks/<name>.png, O/results.jsonl and, if asked, O/logits/<name>.npy.

    When a frame cannot be read, the frames the tracker still holds (MQC start-up) are flushed
    to disk before the error propagates, so every frame before the failure is written.
    Returns the number of frames written; `progress` shows a bar with frames/s on stderr.
    """
    with RunWriter(Path(out_dir), save_logits=save_logits) as writer, \
            tqdm(unit="frame", disable=not progress, file=sys.stderr) as bar:
        sink = _ResultSink(writer, bar)
        try:
            for name, frame in frames:
                sink.received(name)
                sink.write(tracker.start(frame, **prompt) if tracker.state is None else tracker.step(frame))
        except BadFrameError:
            if tracker.state is not None:
                sink.write(tracker.finish())
            raise
        if tracker.state is None:
            raise BadFrameError(f"video for {out_dir}: no frames to segment")
        sink.write(tracker.finish())
        return sink.written


def run_from_checkpoint(
    checkpoint: Path,
    video: Path,
    out_dir: Path,
    mode: str = "mqc",
    backend: str = "torch",
    model_config: str | None = None,
    image_size: int | None = None,
    save_logits: bool = False,
    threads: int | None = None,
    **prompt: object,
) -> tuple[int, str]:
    """`mqc-edge run`: load the model, stream the video's frames through a Tracker in `mode`,
    write the outputs with a progress bar. Returns frames written and the model's description."""
    from mqc_edge.data.frames import iter_frames
    from mqc_edge.runtime.model_source import load_model_source

    source = load_model_source(checkpoint, backend, model_config, image_size, threads=threads)
    tracker = Tracker(source.backend, TrackerConfig(mode=mode), tokenizer=source.tokenizer)
    frames = ((frame.name, frame.rgb) for frame in iter_frames(video))
    return run_video(tracker, frames, out_dir, save_logits=save_logits, progress=True, **prompt), source.description


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
