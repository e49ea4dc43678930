"""Stage feeds from the real FP32 pipeline, and onnxruntime's calibration reader over them.

The Tracker runs the FP32 export over prompted clips in every mode the clip and the model
allow (SAM 2 mode from the box, MQC mode from the text), so memory attention, the decoder and
the memory encoder are calibrated on real memories and prompts, not on random tensors. The
feeds are host copies of each stage call's inputs, in call order: a fixed clip set gives the
same feeds, and so the same scales, every time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from mqc_edge.calibration.clips import PromptedClip
from mqc_edge.export.inputs import RecordingBackend
from mqc_edge.export.parity import track_clip
from mqc_edge.runtime.backends.stage_backend import StageBackend
from mqc_edge.runtime.config import TrackerConfig
from mqc_edge.runtime.results import FrameResult
from mqc_edge.runtime.text import TextTokenizer

Feeds = dict[str, np.ndarray]


def clip_modes(clip: PromptedClip, tokenizer: TextTokenizer | None) -> dict[str, dict[str, object]]:
    """{mode: Tracker.start prompt}: SAM 2 mode from the box; MQC mode from the text when both
    the clip has one and the model has a text encoder."""
    modes: dict[str, dict[str, object]] = {"sam2": {"box": clip.box.tolist()}}
    if tokenizer is not None and clip.text is not None:
        modes["mqc"] = {"text": clip.text}
    return modes


def track_prompted(backend: StageBackend, clip: PromptedClip, mode: str,
                   tokenizer: TextTokenizer | None) -> list[FrameResult]:
    """One Tracker over the clip in `mode`, prompted as `clip_modes` says."""
    return track_clip(backend, clip.frames, TrackerConfig(mode=mode), tokenizer, **clip_modes(clip, tokenizer)[mode])


def record_stage_feeds(backend: StageBackend, clips: list[PromptedClip],
                       tokenizer: TextTokenizer | None) -> dict[str, list[Feeds]]:
    """{stage: inputs of every distinct call, in call order}, from tracking every clip in every mode
    on `backend`. Repeats (a frame encoded once per mode) are dropped: onnxruntime's calibrator
    keeps every call's activations in memory until it computes the ranges."""
    recorder = RecordingBackend(backend)
    for clip in clips:
        for mode in clip_modes(clip, tokenizer):
            track_prompted(recorder, clip, mode, tokenizer)
    return {stage: _distinct(calls) for stage, calls in recorder.calls.items()}


def _distinct(calls: list[Feeds]) -> list[Feeds]:
    seen, kept = set(), []
    for feeds in calls:
        digest = hashlib.sha256(repr([(n, a.dtype.str, a.shape) for n, a in sorted(feeds.items())]).encode()
                                + b"".join(feeds[n].tobytes() for n in sorted(feeds))).hexdigest()
        if digest not in seen:
            seen.add(digest)
            kept.append(feeds)
    return kept


class StageFeedReader(CalibrationDataReader):
    """`quantize_static`'s (and ModelOpt's) reader over one stage's recorded feeds, in call order."""

    def __init__(self, feeds: list[Feeds]) -> None:
        self.feeds = feeds
        self._next: Iterator[Feeds] = iter(feeds)

    def get_next(self) -> Feeds | None:
        return next(self._next, None)

    def rewind(self) -> None:
        self._next = iter(self.feeds)

    def get_first(self) -> Feeds | None:
        """The first call's feeds, position unchanged: ModelOpt's quantizer runs it to learn shapes."""
        return self.feeds[0] if self.feeds else None
