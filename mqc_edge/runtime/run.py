"""Run a video through the Tracker, one or several objects, and write every output as soon as it is ready.

Layout (runtime/outputs.py names the files): with one object, O/masks/, O/results.jsonl,
O/masks_coco_rle.json (and O/logits/); with K > 1 objects the same files under O/obj<k>/, k = 1..K
in prompt order. O/objects.json maps each object to its folder and prompt; O/overlay.mp4 (optional)
shows every object in its own colour. Georeferenced frames add masks_geo/, track.geojson and
track_summary.json to each object's folder (runtime/geo_outputs.py). All of it: docs/outputs.md.
"""

from __future__ import annotations

import json
import math
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Iterable, Mapping, Optional, Sequence, Union

import numpy as np
from tqdm import tqdm

from mqc_edge.atomic import write_text_atomically
from mqc_edge.data.frames import Frame, FrameFormat
from mqc_edge.data.georef import GeoReference
from mqc_edge.errors import BadFrameError
from mqc_edge.runtime.config import TrackerConfig
from mqc_edge.runtime.geo_outputs import GeoTrackWriter
from mqc_edge.runtime.multi_tracker import MultiTracker
from mqc_edge.runtime.outputs import OverlayVideo, RunWriter
from mqc_edge.runtime.prompts import check_prompts
from mqc_edge.runtime.roi import RoiConfig, RoiTracker, new_tracker
from mqc_edge.runtime.results import FrameResult

OBJECTS_FILE = "objects.json"
OVERLAY_FILE = "overlay.mp4"


class _ResultSink:
    """Matches results to the frames they came from (names, pixels for the overlay, georeference),
    writes them. Georeferenced frames also get each object's geo outputs (runtime/geo_outputs.py),
    whose writers start with the first frame and close with `stack`."""

    def __init__(self, writers: list[RunWriter], folders: list[Path], overlay: OverlayVideo | None, bar: tqdm,
                 stack: ExitStack) -> None:
        self.writers, self.folders, self.overlay, self.bar, self.stack = writers, folders, overlay, bar, stack
        self.geo_writers: list[GeoTrackWriter] = []
        self.pending: dict[int, tuple[str, np.ndarray | None, GeoReference | None]] = {}
        self.received_count = 0
        self.written = 0

    def received(self, name: str, rgb: np.ndarray, georef: GeoReference | None) -> None:
        """Frames wait here until their results come (MQC start-up holds up to n_max of them).
        Raises BadFrameError when a frame is georeferenced and the first frame was not, or the reverse."""
        if self.received_count == 0 and georef is not None:
            self.geo_writers = [self.stack.enter_context(GeoTrackWriter(folder, georef)) for folder in self.folders]
        elif (georef is not None) != bool(self.geo_writers):
            has = "has no georeference" if georef is None else "is georeferenced"
            raise BadFrameError(f"frame {name}: {has}, unlike the video's first frame")
        self.pending[self.received_count] = (name, rgb if self.overlay is not None else None, georef)
        self.received_count += 1

    def write(self, per_object: list[list[FrameResult]]) -> None:
        """Every object emits the same frames at the same call, so results are zipped by frame."""
        for results in zip(*per_object, strict=True):
            name, rgb, georef = self.pending.pop(results[0].frame_index)
            for writer, result in zip(self.writers, results):
                writer.write_frame(name, result.mask, _record(result), logits=result.logits,
                                   uncertainty=result.uncertainty)
            for geo_writer, result in zip(self.geo_writers, results):
                geo_writer.write_frame(name, result.frame_index, result.mask, _number(result.iou), georef)
            if self.overlay is not None:
                self.overlay.write(rgb, [result.mask for result in results], [result.uncertainty for result in results])
            self.written += 1
            self.bar.update(1)


def object_folders(out_dir: Path, count: int) -> list[Path]:
    """Where each object's files go: O itself for one object (the single-object layout), else O/obj<k>."""
    out_dir = Path(out_dir)
    return [out_dir] if count == 1 else [out_dir / f"obj{number}" for number in range(1, count + 1)]


FrameInput = Union[tuple[str, np.ndarray], tuple[str, np.ndarray, Optional[GeoReference]], Frame]
"""A frame as `run_video` takes it: (name, uint8 RGB [H, W, 3]), (name, rgb, georef or None), or a `Frame`."""


def _frame_parts(frame: FrameInput) -> tuple[str, np.ndarray, GeoReference | None]:
    """(name, rgb, georef) of any `FrameInput`."""
    if isinstance(frame, Frame):
        return frame.name, frame.rgb, frame.georef
    name, rgb, *georef = frame
    return name, rgb, georef[0] if georef else None


def run_video(
    tracker: MultiTracker | RoiTracker,
    frames: Iterable[FrameInput],
    out_dir: Path,
    prompts: Sequence[Mapping[str, object]],
    save_logits: bool = False,
    progress: bool = False,
    total: int | None = None,
    overlay_fps: float | None = None,
    save_uncertainty: bool = False,
) -> int:
    """Prompt the first frame with `prompts` (one dict of `Tracker.start` keywords per object), track
    the rest, write each object's outputs and, with `overlay_fps`, O/overlay.mp4. Frames are
    (name, uint8 RGB [H, W, 3]) or (name, rgb, georef) tuples or `Frame`s (`FrameInput`); when the
    first carries a `GeoReference`, every frame must, and each object's folder also gets its
    georeferenced outputs (runtime/geo_outputs.py: masks_geo/, track.geojson, track_summary.json;
    needs the `[geo]` extra, else ConfigError). Prompt values are checked (`check_prompts`) before
    anything is written, and O/objects.json records the prompts once the first frame took them (a
    point outside that frame is a PromptError with no objects.json).

    When a frame cannot be read, the frames the tracker still holds (MQC start-up) are flushed
    to disk before the error propagates, so every frame before the failure is written.
    Returns the number of frames written; `progress` shows frames/s on stderr (and an ETA
    when `total`, the frame count, is known).
    """
    check_prompts(prompts)
    folders = object_folders(out_dir, len(prompts))
    with ExitStack() as stack:
        writers = [stack.enter_context(RunWriter(folder, save_logits=save_logits, save_uncertainty=save_uncertainty))
                   for folder in folders]
        overlay = stack.enter_context(OverlayVideo(Path(out_dir) / OVERLAY_FILE, overlay_fps)) if overlay_fps else None
        bar = stack.enter_context(tqdm(total=total, unit="frame", disable=not progress, file=sys.stderr))
        sink = _ResultSink(writers, folders, overlay, bar, stack)
        try:
            for name, frame, georef in map(_frame_parts, frames):
                sink.received(name, frame, georef)
                if tracker.started:
                    sink.write(tracker.step(frame))
                    continue
                first = tracker.start(frame, prompts)  # PromptError for a point outside this frame
                _write_objects_file(Path(out_dir), folders, prompts)  # only prompts the first frame accepted
                sink.write(first)
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


def run_model(
    model: Path,
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
    frame_format: FrameFormat | None = None,
    roi: RoiConfig | None = None,
    save_uncertainty: bool = False,
    uncertainty_gate: float | None = None,
    memory_weighting: str = "confidence",
    encode_ahead: bool = False,
) -> tuple[int, str]:
    """`mqc-edge run`: load `model` (a checkpoint or an `mqc-edge export` directory), stream the
    video's frames through one Tracker per object (the image encoder shared), write the outputs
    with a progress bar. Returns frames written and the model's description. `frame_format`
    (default `FrameFormat()`) says how raw pixels become 8-bit RGB: white point, GeoTIFF bands and
    stretch. `roi` (`--roi auto`) tracks tiny objects on crops around them (runtime/roi.py); None
    (`--roi off`) segments whole frames. `save_uncertainty` writes the CroBIM-U maps (O/uncertainty/);
    `uncertainty_gate`, `memory_weighting` and `encode_ahead` are the `TrackerConfig` fields of that name;
    with `encode_ahead`, `threads` None means one thread per session (the two stages in flight share
    the cores: docs/benchmarks.md, "Encode-ahead")."""
    from mqc_edge.data.frames import frame_count, iter_frames
    from mqc_edge.runtime.model_source import load_model

    if encode_ahead and threads is None:
        threads = 1
    source = load_model(model, backend, model_config, image_size, threads=threads)
    config = TrackerConfig(mode=mode, uncertainty_gate=uncertainty_gate, memory_weighting=memory_weighting,
                           encode_ahead=encode_ahead)
    tracker = new_tracker(source.backend, config, roi, tokenizer=source.tokenizer, text_cache=source.text_cache)
    frame_format = frame_format or FrameFormat()
    frames = iter_frames(video, frame_format)  # whole Frames: a GeoTIFF frame's georef reaches the geo outputs
    count = run_video(tracker, frames, out_dir, prompts, save_logits=save_logits, progress=True,
                      total=frame_count(video), overlay_fps=overlay_fps, save_uncertainty=save_uncertainty)
    return count, source.description


def _record(result: FrameResult) -> dict:
    """One results.jsonl line; non-finite numbers become null (JSON has no NaN). With `--roi auto`, "roi"
    is the frame's crop window [x0, y0, x1, y1] (frame px, x1 and y1 exclusive) or "full"; with an
    uncertainty head, "boundary_uncertainty" the mean u in the mask's boundary band."""
    roi = {} if result.roi is None else {"roi": result.roi if isinstance(result.roi, str) else list(result.roi)}
    uncertain = {} if result.boundary_uncertainty is None else {
        "boundary_uncertainty": _number(result.boundary_uncertainty)}
    return {
        **roi,
        **uncertain,
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
