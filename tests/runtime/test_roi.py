"""Crop-and-zoom for tiny targets (runtime/roi.py, `mqc-edge run --roi auto`): window geometry, crop and
paste, prompts in crop pixels, the per-frame record, `--roi off` unchanged, and end-to-end runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mqc_edge.errors import BadFrameError, ConfigError, PromptError
from mqc_edge.runtime.config import TrackerConfig
from mqc_edge.runtime.multi_tracker import MultiTracker
from mqc_edge.runtime.prompts import point_prompt
from mqc_edge.runtime.roi import (FULL, RoiConfig, RoiTracker, Window, crop, crop_side, mask_box, new_tracker, paste,
                                  place_window, prompt_in_window)
from mqc_edge.runtime.run import run_video
from suite_helpers import track_all

HEIGHT, WIDTH = 240, 400  # a "large" frame for the fake backend's 64 px model
TINY_BOX = [100.0, 100.0, 108.0, 106.0]  # 8 x 6 px: 1.3 model px wide at S = 64
BIG_BOX = [200.0, 20.0, 360.0, 200.0]


def _frames(count: int) -> list[np.ndarray]:
    """A tiny bright target moving right and down over textured ground; a large block standing still."""
    ground = np.random.default_rng(3).integers(30, 90, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
    frames = []
    for t in range(count):
        frame = ground.copy()
        frame[100 + t : 106 + t, 100 + 4 * t : 108 + 4 * t] = 240
        frame[20:200, 200:360] = (40, 200, 220)
        frames.append(frame)
    return frames


def test_window_is_centred_clamped_at_the_edges_and_keeps_its_side() -> None:
    assert place_window((200.0, 120.0), 64, (HEIGHT, WIDTH)) == Window(168, 88, 64)
    assert place_window((5.0, 3.0), 64, (HEIGHT, WIDTH)) == Window(0, 0, 64)
    assert place_window((399.0, 239.0), 64, (HEIGHT, WIDTH)) == Window(WIDTH - 64, HEIGHT - 64, 64)
    assert place_window((200.0, 120.0), 64, (HEIGHT, WIDTH)).box == (168, 88, 232, 152)


def test_crop_side_is_set_by_the_target_clamped_and_none_for_large_targets() -> None:
    config = RoiConfig(max_target_px=16, context=8, min_side=32)
    assert crop_side([0, 0, 10, 6], (1080, 1920), 256, config) == 80  # 8 x the larger side
    assert crop_side([0, 0, 2, 2], (1080, 1920), 256, config) == 32  # at least min_side
    assert crop_side([0, 0, 120, 60], (1080, 1920), 256, config) == 960  # 16 model px wide: still cropped
    assert crop_side([0, 0, 121, 60], (1080, 1920), 256, config) is None  # over 16 model px wide
    assert crop_side([0, 0, 10, 68], (1080, 1920), 256, config) is None  # 16.1 model px tall
    assert crop_side([0, 0, 100, 60], (200, 1920), 2048, RoiConfig(max_target_px=1000)) == 200  # within the frame


def test_pasting_a_crop_back_gives_the_frame_values_inside_the_window_and_background_outside() -> None:
    rng = np.random.default_rng(0)
    frame_mask = rng.random((HEIGHT, WIDTH)) > 0.5
    logits = rng.normal(size=(HEIGHT, WIDTH)).astype(np.float32)
    window = Window(330, 170, 70)  # touches the right and bottom edges
    inside = np.zeros((HEIGHT, WIDTH), bool)
    inside[170:240, 330:400] = True
    assert crop(frame_mask, window).shape == (70, 70)
    np.testing.assert_array_equal(paste(crop(frame_mask, window), window, (HEIGHT, WIDTH), False), frame_mask & inside)
    pasted = paste(crop(logits, window), window, (HEIGHT, WIDTH), np.float32(-1024))
    assert pasted.dtype == np.float32
    np.testing.assert_array_equal(pasted[inside], logits[inside])
    assert (pasted[~inside] == -1024).all()
    assert mask_box(paste(np.eye(70, dtype=bool)[::-1], window, (HEIGHT, WIDTH), False)) == (330, 170, 400, 240)
    assert mask_box(np.zeros((4, 4), bool)) is None


def test_prompts_map_into_the_crop() -> None:
    window = Window(90, 60, 64)
    mask = np.zeros((HEIGHT, WIDTH), bool)
    mask[100:106, 100:108] = True
    moved = prompt_in_window({"box": TINY_BOX, "points": [[104, 103]], "labels": [1], "mask": None}, window)
    assert moved["box"] == [10.0, 40.0, 18.0, 46.0] and moved["points"] == [[14.0, 43.0]] and moved["labels"] == [1]
    assert mask_box(prompt_in_window({"mask": mask}, window)["mask"]) == (10, 40, 18, 46)
    # the model sees the box at 64 / 64 = 1x the crop's pixels: 10 model px from the crop's left edge
    prompt = point_prompt(moved["box"], None, None, (64, 64), _geometry(64))
    np.testing.assert_allclose(prompt.coords[0, :2], [[10, 40], [18, 46]])


def _geometry(image_size: int):
    from mqc_edge.contract import ModelGeometry

    return ModelGeometry(image_size=image_size, hidden_dim=32, mem_dim=8)


def test_a_tiny_object_is_tracked_on_fixed_size_windows_that_follow_it(fake_backend) -> None:
    roi = RoiConfig(context=8, min_side=64)
    per_object = track_all(RoiTracker(fake_backend, TrackerConfig(mode="sam2"), roi), _frames(6),
                      [{"box": TINY_BOX}, {"box": BIG_BOX}])
    tiny, big = per_object
    assert [result.frame_index for result in tiny] == [result.frame_index for result in big] == list(range(6))
    assert all(result.roi == FULL for result in big)
    windows = [Window(result.roi[0], result.roi[1], result.roi[2] - result.roi[0]) for result in tiny]
    assert {window.side for window in windows} == {64}
    assert windows[0] == place_window((104.0, 103.0), 64, (HEIGHT, WIDTH))
    for result, window in zip(tiny, windows):
        assert result.mask.shape == result.logits.shape == (HEIGHT, WIDTH)
        outside = np.ones((HEIGHT, WIDTH), bool)
        crop(outside, window)[...] = False
        assert not result.mask[outside].any() and (result.logits[outside] == -1024).all()
        assert result.timings_ms["roi"] >= 0
    # each window is centred on the previous frame's mask (or stays where it was when that mask is empty)
    for previous, window in zip(tiny, windows[1:]):
        box = mask_box(previous.mask)
        expected = Window(previous.roi[0], previous.roi[1], 64) if box is None else \
            place_window(((box[0] + box[2]) / 2, (box[1] + box[3]) / 2), 64, (HEIGHT, WIDTH))
        assert window == expected


def test_roi_off_is_todays_tracker_and_large_objects_give_its_results(fake_backend) -> None:
    frames, prompts = _frames(4), [{"box": BIG_BOX}, {"points": [[104, 103]], "labels": [1]}]
    assert type(new_tracker(fake_backend, TrackerConfig(mode="sam2"), None)) is MultiTracker
    today = track_all(MultiTracker(fake_backend, TrackerConfig(mode="sam2")), frames, prompts)
    auto = track_all(RoiTracker(fake_backend, TrackerConfig(mode="sam2"), RoiConfig()), frames, prompts)
    for ours, theirs in zip(auto, today):  # a large box and a points-only prompt (no size) stay on full frames
        for one, other in zip(ours, theirs):
            assert one.roi == FULL and other.roi is None
            np.testing.assert_array_equal(one.logits, other.logits)
            np.testing.assert_array_equal(one.mask, other.mask)


def test_mqc_mode_objects_on_crops_and_full_frames_emit_the_same_frames(fake_backend) -> None:
    tracker = RoiTracker(fake_backend, TrackerConfig(mode="mqc"), RoiConfig(min_side=64))
    tiny, big = track_all(tracker, _frames(7), [{"box": TINY_BOX}, {"box": BIG_BOX}])
    assert [result.frame_index for result in tiny] == [result.frame_index for result in big] == list(range(7))
    assert all(isinstance(result.roi, tuple) for result in tiny) and all(result.roi == FULL for result in big)


def test_text_starts_and_resized_frames_are_refused(fake_backend) -> None:
    tracker = RoiTracker(fake_backend, TrackerConfig(mode="mqc"), RoiConfig())
    with pytest.raises(ConfigError, match="text starts"):
        tracker.start(_frames(1)[0], [{"text": "the white car"}])
    tracker.start(_frames(1)[0], [{"box": TINY_BOX}])
    with pytest.raises(BadFrameError, match="expected size"):
        tracker.step(np.zeros((HEIGHT, WIDTH - 1, 3), np.uint8))


def test_a_crop_lane_prompt_error_leaves_nothing_started(fake_backend) -> None:
    tracker = RoiTracker(fake_backend, TrackerConfig(mode="sam2"), RoiConfig(min_side=64))
    frames = _frames(3)
    broken = {"box": TINY_BOX, "points": [[104, 103]], "labels": [1, 0]}  # two labels for one point
    with pytest.raises(PromptError, match="labels"):
        tracker.start(frames[0], [{"box": BIG_BOX}, broken])  # the full-frame object started before the crop's failed
    assert not tracker.started and not tracker.full.started
    expected = track_all(RoiTracker(fake_backend, TrackerConfig(mode="sam2"), RoiConfig(min_side=64)), frames,
                         [{"box": BIG_BOX}, {"box": TINY_BOX}])
    retried = track_all(tracker, frames, [{"box": BIG_BOX}, {"box": TINY_BOX}])  # the same tracker starts again
    for ours, theirs in zip(retried, expected):
        assert [result.frame_index for result in ours] == [0, 1, 2]
        for one, other in zip(ours, theirs):
            np.testing.assert_array_equal(one.logits, other.logits)


def test_each_frames_decision_is_in_results_jsonl(fake_backend, tmp_path) -> None:
    frames = [(f"f{t}", frame) for t, frame in enumerate(_frames(3))]
    tracker = RoiTracker(fake_backend, TrackerConfig(mode="sam2"), RoiConfig(min_side=64))
    run_video(tracker, frames, tmp_path / "auto", [{"box": TINY_BOX}, {"box": BIG_BOX}])
    tiny = [json.loads(line) for line in (tmp_path / "auto" / "obj1" / "results.jsonl").read_text().splitlines()]
    big = [json.loads(line) for line in (tmp_path / "auto" / "obj2" / "results.jsonl").read_text().splitlines()]
    assert tiny[0]["roi"] == list(place_window((104.0, 103.0), 64, (HEIGHT, WIDTH)).box)
    assert all(len(line["roi"]) == 4 for line in tiny) and all(line["roi"] == "full" for line in big)
    run_video(MultiTracker(fake_backend, TrackerConfig(mode="sam2")), frames, tmp_path / "off", [{"box": TINY_BOX}])
    assert all("roi" not in json.loads(line) for line in (tmp_path / "off" / "results.jsonl").read_text().splitlines())


def test_run_roi_auto_end_to_end_on_an_export(exported, tmp_path, capsys) -> None:
    """The CLI on a tiny random-weight export (S = 128): a 6 x 6 px target in a 320 x 240 clip is cropped."""
    from mqc_edge.cli import main

    folder = tmp_path / "frames"
    folder.mkdir()
    ground = np.random.default_rng(5).integers(30, 90, size=(240, 320, 3), dtype=np.uint8)
    for t in range(3):
        frame = ground.copy()
        frame[100:106, 100 + 2 * t : 106 + 2 * t] = 230
        Image.fromarray(frame).save(folder / f"f{t}.png")
    out = tmp_path / "out"
    code = main(["run", str(exported[0]), "--mode", "sam2", "--video", str(folder), "--out", str(out),
                 "--threads", "1", "--box", "100", "100", "106", "106", "--roi", "auto", "--roi-min-side", "64"])
    assert code == 0, capsys.readouterr().err
    lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert lines[0]["roi"] == [71, 71, 135, 135]  # 64 px centred on the box
    assert all(line["roi"][2] - line["roi"][0] == 64 for line in lines)
    assert all(np.asarray(Image.open(path)).shape == (240, 320) for path in (out / "masks").glob("*.png"))
