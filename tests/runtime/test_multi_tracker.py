"""Several objects on one video: K separate Trackers' results, with one image encoding per frame
and, in SAM 2 mode, one call of each per-object stage per frame for all objects."""

from __future__ import annotations

import numpy as np
import pytest

from suite_helpers import CountingBackend, drifting_blocks, track_all
from mqc_edge.errors import BadFrameError, PromptError
from mqc_edge.runtime.config import TrackerConfig
from mqc_edge.runtime.multi_tracker import MultiTracker
from mqc_edge.runtime.text import TextTokenizer
from mqc_edge.runtime.mqc.tmcc import TMCCConfig
from mqc_edge.runtime.tracker import Tracker

HEIGHT, WIDTH = 96, 128


def _frames(count: int) -> list[np.ndarray]:
    return drifting_blocks(count, seed=4, height=HEIGHT, width=WIDTH)


def _run_single(tracker: Tracker, frames: list[np.ndarray], prompt: dict) -> list:
    results = tracker.start(frames[0], **prompt)
    for frame in frames[1:]:
        results += tracker.step(frame)
    return results + tracker.finish()


BATCHED = ("memory_attention", "mask_decoder", "memory_encoder")
MODES = {
    "sam2": [{"box": [10, 20, 40, 40]}, {"points": [[110, 72]], "labels": [1]}, {"box": [0, 0, 60, 50]}],
    "mqc": [{"text": "the ship at the bottom"}, {"box": [100, 60, 120, 84]}, {"text": "the white plane at the top-left"}],
}


def _assert_same_result(ours, theirs, batched: bool) -> None:
    """Per-object calls are bit-identical; a batch reorders onnxruntime's sums (float rounding)."""
    if batched:
        scale = np.abs(theirs.logits).max()
        np.testing.assert_allclose(ours.logits, theirs.logits, rtol=0, atol=1e-5 * scale)
        decided = np.abs(theirs.logits) > 1e-3 * scale
        np.testing.assert_array_equal(ours.mask[decided], theirs.mask[decided])
    else:
        np.testing.assert_array_equal(ours.logits, theirs.logits)
        np.testing.assert_array_equal(ours.mask, theirs.mask)
    assert ours.flags == theirs.flags
    np.testing.assert_equal(ours.quality, theirs.quality)


@pytest.mark.parametrize("mode", sorted(MODES))
def test_k_objects_equal_k_trackers_with_one_image_encoding_per_frame(backends, mode: str) -> None:
    _, onnx = backends
    frames, prompts = _frames(11), MODES[mode]
    config = TrackerConfig(mode=mode, tmcc=TMCCConfig(n_max=3))  # start-up buffering within the clip
    tokenizer = TextTokenizer(onnx.tokenizer_file, onnx.geometry.mqc.text_tokens)
    shared = CountingBackend(onnx)
    together = track_all(MultiTracker(shared, config, tokenizer), frames, prompts)
    assert shared.calls["image_encoder"] == len(frames)
    alone = CountingBackend(onnx)
    for prompt, results in zip(prompts, together):
        reference = _run_single(Tracker(alone, config, tokenizer), frames, prompt)
        assert [r.frame_index for r in results] == [r.frame_index for r in reference] == list(range(len(frames)))
        for ours, theirs in zip(results, reference):
            _assert_same_result(ours, theirs, batched=mode == "sam2")
    assert alone.calls["image_encoder"] == len(prompts) * len(frames)
    per_stage_alone = {stage: count for stage, count in alone.calls.items() if stage != "image_encoder"}
    if mode == "sam2":  # tracking frames: one batched call per stage; the prompted frame per object
        tracking = len(frames) - 1
        per_stage_alone = {stage: count - (len(prompts) - 1) * tracking if stage in BATCHED else count
                           for stage, count in per_stage_alone.items()}
    assert {stage: shared.calls[stage] for stage in per_stage_alone} == per_stage_alone
    # the objects really differ, so a mix-up between their states would show
    assert not np.array_equal(together[0][-1].logits, together[1][-1].logits)


def test_prompts_and_frames_are_checked_for_every_object(fake_backend) -> None:
    tracker = MultiTracker(fake_backend)
    frame = _frames(1)[0]
    with pytest.raises(PromptError, match="call start"):
        tracker.step(frame)
    with pytest.raises(PromptError, match="at least one object"):
        tracker.start(frame, [])
    with pytest.raises(PromptError, match=r"object 2 prompt: .* got \['bbox'\]"):
        tracker.start(frame, [{"box": [1, 2, 30, 40]}, {"bbox": [1, 2, 3, 4]}])
    with pytest.raises(PromptError, match="text and box"):
        tracker.start(frame, [{"box": [1, 2, 30, 40]}, {"text": "a ship", "box": [1, 2, 30, 40]}])
    assert not tracker.started
    tracker.start(frame, [{"box": [1, 2, 30, 40]}, {"box": [50, 50, 90, 80]}])
    with pytest.raises(BadFrameError, match=r"frame 1: expected size \(96, 128\), got \(96, 100\)"):
        tracker.step(frame[:, :100].copy())
