"""Encode-ahead (runtime/encode_ahead.py): the next frame's image encoder in a worker thread while
this frame's memory stages run gives the serial Tracker's results exactly, one call later; a video
that breaks keeps every frame before the break; what cannot overlap is refused by name."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from suite_helpers import drifting_blocks
from mqc_edge.errors import BadFrameError, ConfigError
from mqc_edge.runtime.config import TrackerConfig
from mqc_edge.runtime.mqc.tmcc import TMCCConfig
from mqc_edge.runtime.multi_tracker import MultiTracker
from mqc_edge.runtime.roi import RoiTracker
from mqc_edge.runtime.run import run_video
from mqc_edge.runtime.text import TextTokenizer

PROMPTS = {"sam2": [{"box": [10, 20, 40, 40]}, {"points": [[110, 72]], "labels": [1]}],
           "mqc": [{"text": "the ship at the bottom"}, {"box": [100, 60, 120, 84]}]}


def _per_call(tracker: MultiTracker, frames: list[np.ndarray], prompts: list[dict]) -> list[list[list]]:
    """Each call's per-object result lists: start, every step, finish."""
    calls = [tracker.start(frames[0], prompts)]
    calls += [tracker.step(frame) for frame in frames[1:]]
    return calls + [tracker.finish()]


@pytest.mark.parametrize("mode", sorted(PROMPTS))
def test_encode_ahead_gives_the_serial_results_exactly_one_call_later(backends, mode: str) -> None:
    _, onnx = backends
    frames = drifting_blocks(9, seed=7)
    tokenizer = TextTokenizer(onnx.tokenizer_file, onnx.geometry.mqc.text_tokens)
    tmcc = TMCCConfig(n_max=3)  # MQC start-up buffering within the clip
    serial = _per_call(MultiTracker(onnx, TrackerConfig(mode=mode, tmcc=tmcc), tokenizer), frames, PROMPTS[mode])
    ahead = _per_call(MultiTracker(onnx, TrackerConfig(mode=mode, tmcc=tmcc, encode_ahead=True), tokenizer),
                      frames, PROMPTS[mode])
    # serial call t's results come at call t + 1; finish gives the held frame's and then the flush's
    nothing = [[] for _ in PROMPTS[mode]]
    held_and_flushed = [last + flushed for last, flushed in zip(serial[-2], serial[-1])]
    expected = [serial[0], nothing] + serial[1:-2] + [held_and_flushed]
    indices = lambda calls: [[[r.frame_index for r in obj] for obj in call] for call in calls]  # noqa: E731
    assert indices(ahead) == indices(expected)
    flat_serial = [r for call in serial for obj in call for r in obj]
    flat_ahead = [r for call in ahead for obj in call for r in obj]
    assert len(flat_ahead) == len(flat_serial) == len(frames) * len(PROMPTS[mode])
    key = lambda r: r.frame_index  # noqa: E731 (objects keep their order within a frame)
    for ours, theirs in zip(sorted(flat_ahead, key=key), sorted(flat_serial, key=key)):
        assert ours.frame_index == theirs.frame_index
        np.testing.assert_array_equal(ours.logits, theirs.logits)  # same sessions, same inputs: bit-identical
        assert ours.flags == theirs.flags
        np.testing.assert_equal(ours.quality, theirs.quality)


@pytest.mark.parametrize("mode", ["sam2", "mqc"])
def test_a_bad_frame_keeps_every_frame_before_it_on_disk(fake_backend, tmp_path: Path, mode: str) -> None:
    fake_backend.concurrent_stages = True
    good = [(f"{t:05d}", np.full((24, 32, 3), 20 * t, np.uint8)) for t in range(6)]
    frames = good + [("00006", np.zeros((12, 32, 3), np.uint8))]  # wrong size: BadFrameError at frame 6
    out = tmp_path / "out"
    with pytest.raises(BadFrameError, match=r"frame 6: expected size \(24, 32\), got \(12, 32\)"):
        run_video(MultiTracker(fake_backend, TrackerConfig(mode=mode, encode_ahead=True)), iter(frames), out,
                  [{"box": [4, 4, 20, 16]}])
    written = sorted(path.stem for path in (out / "masks").glob("*.png"))
    assert written == [name for name, _ in good]  # the frame in flight was segmented by finish
    lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [line["frame_index"] for line in lines] == list(range(6))


def test_what_cannot_overlap_is_refused_by_name(fake_backend) -> None:
    with pytest.raises(ConfigError, match="encode_ahead with frame_step"):
        TrackerConfig(encode_ahead=True, frame_step=True)
    with pytest.raises(ConfigError, match="does not run two stages at once; onnxruntime on the CPU does"):
        MultiTracker(fake_backend, TrackerConfig(encode_ahead=True))
    fake_backend.concurrent_stages = True
    with pytest.raises(ConfigError, match="--roi auto with encode-ahead"):
        RoiTracker(fake_backend, TrackerConfig(encode_ahead=True))


def test_onnxruntime_runs_stages_concurrently_on_the_cpu_only(backends) -> None:
    _, onnx = backends
    assert onnx.concurrent_stages is True
