"""Run a started-on-frame-0 Tracker over a whole video and write every output as it comes."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from mqc_edge.errors import BadFrameError
from mqc_edge.runtime.outputs import RunWriter
from mqc_edge.runtime.tracker import FrameResult, Tracker


def run_video(
    tracker: Tracker,
    frames: Iterable[tuple[str, np.ndarray]],
    out_dir: Path,
    save_logits: bool = False,
    **prompt: object,
) -> int:
    """Prompt the first (name, RGB frame) with `prompt` (box / points+labels / mask), track
    the rest; writes O/masks/<name>.png, O/results.jsonl and, if asked, O/logits/<name>.npy.
    Returns the number of frames written."""
    count = 0
    with RunWriter(Path(out_dir), save_logits=save_logits) as writer:
        for name, frame in frames:
            result = tracker.start(frame, **prompt) if count == 0 else tracker.step(frame)
            writer.write_frame(name, result.mask, _record(result), logits=result.logits)
            count += 1
    if count == 0:
        raise BadFrameError(f"video for {out_dir}: no frames to segment")
    return count


def _record(result: FrameResult) -> dict:
    return {
        "frame_index": result.frame_index,
        "object_score": round(result.object_score, 6),
        "iou": round(result.iou, 6),
        "timings_ms": {stage: round(ms, 3) for stage, ms in result.timings_ms.items()},
    }
