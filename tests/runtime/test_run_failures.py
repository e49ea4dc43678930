"""`mqc-edge run` when its input is bad: a prompt value stops it before anything is written; a video
that ends early keeps every frame before the break on disk and ends in a one-line error, exit 2."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from mqc_edge.data.frames import iter_frames
from mqc_edge.errors import BadFrameError, PromptError
from mqc_edge.runtime.config import TrackerConfig
from mqc_edge.runtime.multi_tracker import MultiTracker
from mqc_edge.runtime.run import run_video


@pytest.fixture
def truncated_avi(tmp_path: Path) -> Path:
    """A 12-frame MJPG AVI cut to half its bytes: OpenCV decodes a few frames, then stops."""
    path = tmp_path / "cut.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    rng = np.random.default_rng(1)
    for _ in range(12):
        writer.write(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))
    writer.release()
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


@pytest.fixture
def umask_027():
    previous = os.umask(0o027)
    yield
    os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_nan_box_stops_the_run_before_anything_is_written(fake_backend, tmp_path) -> None:
    frames = [("00000", np.zeros((24, 32, 3), np.uint8))]
    with pytest.raises(PromptError, match=r"object 1 box prompt: expected finite x0 y0 x1 y1, got \[nan, 10.0"):
        run_video(MultiTracker(fake_backend), frames, tmp_path / "out", [{"box": [float("nan"), 10, 20, 20]}])
    assert not (tmp_path / "out").exists()


def test_a_point_outside_the_first_frame_records_no_prompt(fake_backend, tmp_path) -> None:
    """The frame size is known only when the first frame arrives; objects.json waits for it."""
    frames = [("00000", np.zeros((24, 32, 3), np.uint8))]
    prompt = {"points": [[40, 10]], "labels": [1]}
    with pytest.raises(PromptError, match="outside"):
        run_video(MultiTracker(fake_backend), frames, tmp_path / "out", [prompt])
    assert not (tmp_path / "out" / "objects.json").exists()


@pytest.mark.parametrize("mode", ["sam2", "mqc"])  # MQC holds its start-up frames back: they are flushed
def test_a_truncated_video_keeps_its_good_frames_and_names_the_last(fake_backend, truncated_avi, tmp_path,
                                                                    mode) -> None:
    out = tmp_path / "out"
    frames = ((frame.name, frame.rgb) for frame in iter_frames(truncated_avi))
    with pytest.raises(BadFrameError, match=r"decoding stopped after frame \d{5}: \d+ of the 12 frames") as error:
        run_video(MultiTracker(fake_backend, TrackerConfig(mode=mode)), frames, out, [{"box": [4, 4, 20, 16]}],
                  overlay_fps=5)
    written = sorted(path.stem for path in (out / "masks").glob("*.png"))
    assert written and len(written) < 12 and f"after frame {written[-1]}:" in str(error.value)
    lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [line["frame"] for line in lines] == written
    assert sorted(json.loads((out / "masks_coco_rle.json").read_text())) == written
    assert (out / "overlay.mp4").is_file() and not list(out.rglob(".*"))


def test_cli_run_exits_2_in_one_line_and_keeps_the_outputs(fake_backend, truncated_avi, tmp_path, monkeypatch,
                                                           capsys) -> None:
    from mqc_edge import cli
    from mqc_edge.runtime import model_source

    source = SimpleNamespace(backend=fake_backend, tokenizer=None, text_cache=None, description="fake")
    monkeypatch.setattr(model_source, "load_model", lambda *args, **kwargs: source)
    out = tmp_path / "out"
    code = cli.main(["run", "--checkpoint", str(tmp_path / "model.safetensors"), "--mode", "sam2",
                     "--video", str(truncated_avi), "--out", str(out), "--box", "4", "4", "20", "16"])
    error_lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("mqc-edge: error")]
    assert code == 2 and len(error_lines) == 1 and "decoding stopped after frame" in error_lines[0]
    assert list((out / "masks").glob("*.png")) and (out / "masks_coco_rle.json").is_file()


def test_outputs_get_the_mode_the_umask_gives(fake_backend, tmp_path, umask_027) -> None:
    out = tmp_path / "out"
    frames = [(f"{t:05d}", np.full((24, 32, 3), 40 * t, np.uint8)) for t in range(3)]
    run_video(MultiTracker(fake_backend), frames, out, [{"box": [4, 4, 20, 16]}], save_logits=True, overlay_fps=5)
    files = [out / "objects.json", out / "overlay.mp4", out / "results.jsonl", out / "masks_coco_rle.json",
             out / "masks" / "00002.png", out / "logits" / "00002.npy"]
    assert {str(path.relative_to(out)): oct(_mode(path)) for path in files} == {
        str(path.relative_to(out)): oct(0o640) for path in files}
    assert _mode(out / "masks") == 0o750
