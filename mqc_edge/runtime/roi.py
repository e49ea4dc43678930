"""Crop-and-zoom for tiny targets (ROS-SAM, DESIGN section 7; issue 21 item 2): `mqc-edge run --roi auto`.

In a 1920x1080 frame a car of 10-20 px is a few cells of the stride-16 feature grid once the frame
is resized to the model size S. An object whose frame-0 box is small at model scale (larger side
<= `RoiConfig.max_target_px` model px) is instead tracked on square crops around it: the crop is
resized to S x S by the normal preprocessing (a zoom of S / side), segmented, and its logits and
mask pasted back into the frame (outside the crop: background).

Memory is spatial, so every memory of an object must have the same scale and frame of reference:
the decision is made once per object on frame 0, the crop side is fixed for the whole video (from
the frame-0 box), and the window is re-centred on the last mask's box before each frame (the
target stays near the crop centre, so memory positions are target-centred); an empty mask leaves
the window where it was. Each cropped object is its own single-object Tracker fed its own crops,
so it pays its own image encoding per frame; all full-frame objects share one. Text starts are
refused (their size is only known after frame 0); a points-only prompt has no size and is tracked
on full frames. docs/architecture.md ("Crop-and-zoom") says why.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Iterator, Mapping, Sequence

import numpy as np

from mqc_edge.errors import BadFrameError, ConfigError
from mqc_edge.runtime.backends.stage_backend import StageBackend
from mqc_edge.runtime.config import TrackerConfig
from mqc_edge.runtime.multi_tracker import MultiTracker
from mqc_edge.runtime.preprocess import check_frame
from mqc_edge.runtime.results import FrameResult
from mqc_edge.runtime.text import TextTokenizer

BACKGROUND_LOGIT = np.float32(-1024.0)
"""Logit pasted outside a crop: SAM 2's NO_OBJ_SCORE (sam2_base.py), surely background."""
FULL = "full"
"""The record of a frame segmented whole (results.jsonl "roi")."""


@dataclass(frozen=True)
class RoiConfig:
    """When an object is tracked on crops, and how large they are; the CLI builds it (`--roi auto`)."""

    max_target_px: float = 16.0  # frame-0 box's larger side at model scale, model px, at or below which the object
    #                              is cropped: one stride-16 cell (issue 21 item 2)
    context: float = 8.0  # crop side = context x the frame-0 box's larger side (frame px): the target then spans
    #                       about S / context model px (32 at S = 256: two cells) and the crop keeps its surroundings
    min_side: int = 128  # frame px: room for the target's motion between frames (the window follows the last box)

    def __post_init__(self) -> None:
        if not (self.max_target_px > 0 and self.context >= 1 and self.min_side >= 1):
            raise ConfigError(f"roi: expected max_target_px > 0, context >= 1, min_side >= 1; got {self}")


@dataclass(frozen=True)
class Window:
    """A square crop window in frame pixels: columns x0 .. x0+side-1, rows y0 .. y0+side-1."""

    x0: int
    y0: int
    side: int

    @property
    def box(self) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1), x1 and y1 exclusive: what results.jsonl records."""
        return (self.x0, self.y0, self.x0 + self.side, self.y0 + self.side)


def crop_side(box: Sequence[float], frame_size: tuple[int, int], image_size: int, config: RoiConfig) -> int | None:
    """Side (frame px) of the object's crops, from its frame-0 box [x0, y0, x1, y1] (frame px) in a frame
    (H, W) resized to image_size S; None when the box's larger side at model scale exceeds max_target_px
    (the object is tracked on full frames). The side is clamped to [min_side, min(H, W)]."""
    height, width = frame_size
    box_w, box_h = float(box[2]) - float(box[0]), float(box[3]) - float(box[1])
    if max(box_w * image_size / width, box_h * image_size / height) > config.max_target_px:
        return None
    return int(np.clip(round(config.context * max(box_w, box_h, 1.0)), min(config.min_side, height, width),
                       min(height, width)))


def place_window(center: tuple[float, float], side: int, frame_size: tuple[int, int]) -> Window:
    """The side x side window centred on `center` (x, y) frame px, shifted to lie inside the frame (H, W)."""
    height, width = frame_size
    x0 = int(np.clip(round(center[0] - side / 2), 0, width - side))
    y0 = int(np.clip(round(center[1] - side / 2), 0, height - side))
    return Window(x0, y0, side)


def box_center(box: Sequence[float]) -> tuple[float, float]:
    return ((float(box[0]) + float(box[2])) / 2, (float(box[1]) + float(box[3])) / 2)


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Tight box (x0, y0, x1, y1), x1 and y1 exclusive, of a bool [H, W] mask; None when it is empty."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)


def crop(image: np.ndarray, window: Window) -> np.ndarray:
    """[H, W, ...] -> [side, side, ...]: the window's pixels (a view)."""
    return image[window.y0:window.y0 + window.side, window.x0:window.x0 + window.side]


def paste(values: np.ndarray, window: Window, frame_size: tuple[int, int], fill: object) -> np.ndarray:
    """[side, side] crop values -> [H, W] with `fill` outside the window (inverse of `crop` inside it)."""
    full = np.full(frame_size, fill, dtype=values.dtype)
    crop(full, window)[...] = values
    return full


def prompt_in_window(prompt: Mapping[str, object], window: Window) -> dict[str, object]:
    """An object's frame-0 prompt in the crop's pixels: box and points shifted by (x0, y0), mask cropped."""
    offset = np.array([window.x0, window.y0], np.float64)
    moved = dict(prompt)
    if prompt.get("box") is not None:
        moved["box"] = (np.asarray(prompt["box"], np.float64).reshape(2, 2) - offset).reshape(4).tolist()
    if prompt.get("points") is not None:
        moved["points"] = (np.asarray(prompt["points"], np.float64).reshape(-1, 2) - offset).tolist()
    if prompt.get("mask") is not None:
        moved["mask"] = crop(np.asarray(prompt["mask"]), window)
    return moved


def prompt_box(prompt: Mapping[str, object]) -> Sequence[float] | None:
    """The size-giving box of a prompt: its box, else its mask's box; None for points alone."""
    if prompt.get("box") is not None:
        return np.asarray(prompt["box"], np.float64).reshape(4).tolist()
    if prompt.get("mask") is not None:
        return mask_box(np.asarray(prompt["mask"], bool))
    return None


@dataclass
class _CropLane:
    """One cropped object: its single-object tracker, the window of the next frame, and the windows of
    the frames it was fed whose results have not come out yet (MQC start-up holds frames back)."""

    tracker: MultiTracker
    window: Window
    fed: dict[int, Window]


class RoiTracker:
    """`MultiTracker`'s verbs (`start`, `step`, `finish`, one result list per object in prompt order)
    with each tiny object tracked on its own crops. Every result records its window (`FrameResult.roi`)."""

    def __init__(self, backend: StageBackend, config: TrackerConfig | None = None, roi: RoiConfig | None = None,
                 tokenizer: TextTokenizer | None = None,
                 text_cache: dict[str, dict[str, np.ndarray]] | None = None) -> None:
        if config is not None and config.encode_ahead:
            raise ConfigError("--roi auto with encode-ahead: crop lanes re-encode their own windows each frame "
                              "and expect one result per step; run with --roi off or without --encode-ahead")
        self.new_tracker = lambda: MultiTracker(backend, config, tokenizer, text_cache)
        self.full = self.new_tracker()  # refuses a mode the model lacks now
        self.image_size = backend.geometry.image_size
        self.roi = roi or RoiConfig()
        self.lanes: list[_CropLane | None] = []  # per object: its crop lane, or None (on full frames)
        self.ready: list[list[FrameResult]] = []  # per object: results waiting for the other objects'
        self.frame_size: tuple[int, int] = (0, 0)
        self.next_index = 0

    @property
    def started(self) -> bool:
        return bool(self.lanes)

    def start(self, frame0: np.ndarray, prompts: Sequence[Mapping[str, object]]) -> list[list[FrameResult]]:
        """Decide each object's lane from its prompt, prompt the full-frame objects together and each
        cropped object on its crop (prompt mapped into it). ConfigError for a text prompt; PromptError
        (or what a tracker raises) for a bad prompt, after which nothing is started."""
        check_frame(frame0, "0")
        if not prompts:
            return self.full.start(frame0, prompts)  # PromptError: no object
        if any(prompt.get("text") is not None for prompt in prompts):
            raise ConfigError("--roi auto: text starts are not supported yet (the target's size is known only "
                              "after frame 0); give a box, or run with --roi off")
        frame_size = frame0.shape[:2]
        lanes: list[_CropLane | None] = []
        for prompt in prompts:
            box = prompt_box(prompt)
            side = None if box is None else crop_side(box, frame_size, self.image_size, self.roi)
            window = None if side is None else place_window(box_center(box), side, frame_size)
            lanes.append(None if window is None else _CropLane(self.new_tracker(), window, {0: window}))
        full_prompts = [prompt for prompt, lane in zip(prompts, lanes) if lane is None]
        try:
            full_results = iter(self.full.start(frame0, full_prompts) if full_prompts else [])
            crop_results = [lane.tracker.start(_pixels(frame0, lane.window), [prompt_in_window(prompt, lane.window)])[0]
                            if lane is not None else None for prompt, lane in zip(prompts, lanes)]
        except Exception:
            self.full = self.new_tracker()  # one object's bad prompt leaves nothing half-started: start may be retried
            raise
        self.lanes, self.frame_size, self.next_index = lanes, frame_size, 1
        self.ready = [[] for _ in lanes]
        return self._collect(full_results, crop_results)

    def step(self, frame: np.ndarray) -> list[list[FrameResult]]:
        """Crop the frame at each cropped object's current window and track every object on it."""
        check_frame(frame, str(self.next_index))
        if frame.shape[:2] != self.frame_size:
            raise BadFrameError(f"frame {self.next_index}: expected size {self.frame_size}, got {frame.shape[:2]}")
        full_results = iter(self.full.step(frame) if self.full.started else [])
        crop_results = []
        for lane in self.lanes:
            if lane is not None:
                lane.fed[self.next_index] = lane.window
            crop_results.append(None if lane is None else lane.tracker.step(_pixels(frame, lane.window))[0])
        self.next_index += 1
        return self._collect(full_results, crop_results)

    def finish(self) -> list[list[FrameResult]]:
        """End of the video: every object emits what it still holds back."""
        full_results = iter(self.full.finish() if self.full.started else [])
        return self._collect(full_results, [None if lane is None else lane.tracker.finish()[0] for lane in self.lanes])

    def _collect(self, full_results: Iterator[list[FrameResult]],
                 crop_results: list[list[FrameResult] | None]) -> list[list[FrameResult]]:
        """Results in frame coordinates, per object; only the frames every object has emitted (objects on
        different trackers may hold back different frames in MQC start-up)."""
        for number, (lane, results) in enumerate(zip(self.lanes, crop_results)):
            if lane is None:
                self.ready[number] += [replace(result, roi=FULL) for result in next(full_results)]
            else:
                self.ready[number] += [self._pasted(lane, result) for result in results]
        count = min(len(results) for results in self.ready)
        out = [results[:count] for results in self.ready]
        self.ready = [results[count:] for results in self.ready]
        return out

    def _pasted(self, lane: _CropLane, result: FrameResult) -> FrameResult:
        """A crop's result pasted into the frame; the lane's window moves onto its mask's box, if any."""
        begin = time.perf_counter()
        window = lane.fed.pop(result.frame_index)
        box = mask_box(result.mask)
        if box is not None:
            center = box_center(box)
            lane.window = place_window((center[0] + window.x0, center[1] + window.y0), window.side, self.frame_size)
        logits = paste(result.logits, window, self.frame_size, BACKGROUND_LOGIT)
        mask = paste(result.mask, window, self.frame_size, False)
        uncertainty = None if result.uncertainty is None else paste(result.uncertainty, window, self.frame_size, 0.0)
        timings = {**result.timings_ms, "roi": 1e3 * (time.perf_counter() - begin)}
        return replace(result, logits=logits, mask=mask, uncertainty=uncertainty, roi=window.box, timings_ms=timings)


def _pixels(frame: np.ndarray, window: Window) -> np.ndarray:
    """uint8 RGB [side, side, 3], contiguous (OpenCV's flow in TMCC reads it)."""
    return np.ascontiguousarray(crop(frame, window))


def new_tracker(backend: StageBackend, config: TrackerConfig | None = None, roi: RoiConfig | None = None,
                tokenizer: TextTokenizer | None = None,
                text_cache: dict[str, dict[str, np.ndarray]] | None = None) -> MultiTracker | RoiTracker:
    """The tracker of a run: a `MultiTracker` (`--roi off`, roi None), else a `RoiTracker`."""
    if roi is None:
        return MultiTracker(backend, config, tokenizer, text_cache)
    return RoiTracker(backend, config, roi, tokenizer, text_cache)
