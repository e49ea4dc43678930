"""Tracker behaviour on the torch backend (frame-by-frame equality with Meta: tests/model/test_sam2_parity.py)."""

from __future__ import annotations

import numpy as np
import pytest

from mqc_edge.errors import BadFrameError, ConfigError, PromptError
from mqc_edge.runtime.backends.stage_backend import load_backend
from mqc_edge.runtime.tracker import Tracker, TrackerConfig

FRAME = np.random.default_rng(0).integers(0, 255, size=(90, 120, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def backend():
    return load_backend("torch", image_size=128, seed=5)


def test_step_before_start_is_a_prompt_error(backend) -> None:
    with pytest.raises(PromptError, match="call start"):
        Tracker(backend).step(FRAME)


def test_frames_must_keep_the_video_size_and_format(backend) -> None:
    tracker = Tracker(backend)
    with pytest.raises(BadFrameError, match=r"frame 0: expected uint8 \[H, W, 3\] RGB, got float64"):
        tracker.start(FRAME / 255.0, box=[10, 10, 60, 50])
    tracker.start(FRAME, box=[10, 10, 60, 50])
    with pytest.raises(BadFrameError, match=r"frame 1: expected size \(90, 120\), got \(91, 120\)"):
        tracker.step(np.zeros((91, 120, 3), np.uint8))


def test_mask_and_points_together_are_refused(backend) -> None:
    with pytest.raises(PromptError, match="got box and mask"):
        Tracker(backend).start(FRAME, box=[1, 2, 3, 4], mask=np.ones((90, 120), bool))


def test_results_carry_frame_size_outputs_and_per_stage_timings(backend) -> None:
    tracker = Tracker(backend)
    [first] = tracker.start(FRAME, points=[[60, 45]], labels=[1])
    results = [result for shift in range(1, 8) for result in tracker.step(np.roll(FRAME, shift, axis=1))]
    assert first.frame_index == 0 and [r.frame_index for r in results] == list(range(1, 8))
    for result in [first, *results]:
        assert result.logits.shape == result.mask.shape == (90, 120)
        assert result.logits_lowres.shape == (32, 32)
        np.testing.assert_array_equal(result.mask, result.logits > 0)
        assert 0.0 <= result.iou <= 1.0
    assert {"image_encoder", "prompt_encoder", "no_memory", "mask_decoder", "memory_encoder"} <= set(first.timings_ms)
    tracking_stages = {"image_encoder", "memory_attention", "mask_decoder", "memory_encoder"}
    assert tracking_stages | {"preprocess", "postprocess"} == set(results[-1].timings_ms)
    bank = tracker.state.bank
    assert bank.memory.shape[:2] == (1, 7) and sorted(bank.memory_frames[1:]) == list(range(2, 8))


def test_config_rejects_unknown_mode_and_a_plain_sam_model_in_mqc_mode(backend) -> None:
    with pytest.raises(ConfigError, match=r"expected one of \('sam2', 'mqc'\), got 'xmem'"):
        TrackerConfig(mode="xmem")
    with pytest.raises(ConfigError, match="plain SAM 2.1 checkpoint runs mode 'sam2' only"):
        Tracker(backend, TrackerConfig(mode="mqc"))


def test_run_video_writes_masks_logits_and_results(backend, tmp_path) -> None:
    import json

    from PIL import Image

    from mqc_edge.runtime.multi_tracker import MultiTracker
    from mqc_edge.runtime.run import run_video

    frames = [(f"{t:05d}", np.roll(FRAME, t, axis=0)) for t in range(3)]
    count = run_video(MultiTracker(backend), frames, tmp_path, [{"box": [10, 10, 60, 50]}], save_logits=True)
    lines = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert count == 3 and [line["frame"] for line in lines] == ["00000", "00001", "00002"]
    assert [line["frame_index"] for line in lines] == [0, 1, 2] and "image_encoder" in lines[1]["timings_ms"]
    assert all(line["object_present"] == (line["object_score"] > 0) and line["flags"] == [] for line in lines)
    logits = np.load(tmp_path / "logits" / "00002.npy")
    mask = np.asarray(Image.open(tmp_path / "masks" / "00002.png"))
    assert logits.shape == mask.shape == (90, 120)
    np.testing.assert_array_equal(mask == 255, logits > 0)
