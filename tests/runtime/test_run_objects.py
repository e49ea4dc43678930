"""`mqc-edge run` outputs: several objects (one folder each), the single-object layout, COCO RLE,
the overlay video, and a progress bar that knows the frame count."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from mqc_edge.cli import main
from mqc_edge.runtime.outputs import decode_coco_rle

HEIGHT, WIDTH, FRAMES = 96, 128, 6


@pytest.fixture(scope="module")
def frames_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("frames")
    ground = np.random.default_rng(2).integers(30, 90, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
    for t in range(FRAMES):
        frame = ground.copy()
        frame[20:40, 10 + 3 * t : 40 + 3 * t] = 230
        Image.fromarray(frame).save(folder / f"f{t:02d}.png")
    return folder


def _run(exported, frames_dir: Path, out: Path, *prompt: str) -> int:
    return main(["run", "--checkpoint", str(exported[0]), "--backend", "onnxruntime", "--mode", "sam2",
                 "--video", str(frames_dir), "--out", str(out), "--threads", "1", *prompt])


def _masks(folder: Path) -> dict[str, np.ndarray]:
    return {path.stem: np.asarray(Image.open(path)) == 255 for path in sorted((folder / "masks").glob("*.png"))}


def test_several_objects_get_a_folder_each_and_one_overlay(exported, frames_dir, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    code = _run(exported, frames_dir, out, "--box", "10", "20", "40", "40", "--points", "100,70,1",
                "--box", "60", "50", "120", "90", "--overlay", "--overlay-fps", "5", "--save-logits")
    assert code == 0, capsys.readouterr().err
    objects = json.loads((out / "objects.json").read_text())
    assert [entry["folder"] for entry in objects] == ["obj1", "obj2", "obj3"]
    assert objects[0]["prompt"] == {"box": [10.0, 20.0, 40.0, 40.0]}
    assert objects[1]["prompt"] == {"points": [[100.0, 70.0]], "labels": [1]}
    names = [f"f{t:02d}" for t in range(FRAMES)]
    for entry in objects:
        folder = out / entry["folder"]
        masks = _masks(folder)
        assert sorted(masks) == names
        lines = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]
        assert [line["frame"] for line in lines] == names
        rles = json.loads((folder / "masks_coco_rle.json").read_text())
        assert all(np.array_equal(decode_coco_rle(rles[name]), masks[name]) for name in names)
    assert not (out / "masks").exists()  # the single-object layout is for one object only
    # each folder holds its own object (random weights: masks may all be full, the prompted logits are not)
    assert not np.array_equal(np.load(out / "obj1" / "logits" / "f00.npy"), np.load(out / "obj3" / "logits" / "f00.npy"))
    capture = cv2.VideoCapture(str(out / "overlay.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == FRAMES
    assert (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (WIDTH, HEIGHT)
    assert not list(out.rglob(".*"))  # no temporary file left behind
    err = capsys.readouterr().err
    assert f"{FRAMES}/{FRAMES}" in err and "frame/s" in err  # a total, hence an ETA


def test_one_object_keeps_the_single_object_layout_and_equals_the_same_object_among_others(
        exported, frames_dir, tmp_path, capsys) -> None:
    alone, together = tmp_path / "alone", tmp_path / "together"
    assert _run(exported, frames_dir, alone, "--box", "60", "50", "120", "90") == 0
    assert _run(exported, frames_dir, together, "--box", "10", "20", "40", "40", "--box", "60", "50", "120", "90") == 0
    masks = _masks(alone)
    assert len(masks) == FRAMES and (alone / "results.jsonl").is_file() and (alone / "masks_coco_rle.json").is_file()
    assert not (alone / "overlay.mp4").exists()
    assert json.loads((alone / "objects.json").read_text())[0]["folder"] == "."
    other = _masks(together / "obj2")
    assert all(np.array_equal(masks[name], other[name]) for name in masks)


def test_run_without_any_object_is_one_line(exported, frames_dir, tmp_path, capsys) -> None:
    code = _run(exported, frames_dir, tmp_path / "out")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("mqc-edge: error: run: give at least one object")


def test_run_encode_ahead_writes_the_serial_runs_files(exported, frames_dir, tmp_path, capsys) -> None:
    prompt = ("--box", "10", "20", "40", "40", "--points", "100,70,1", "--save-logits")
    assert _run(exported, frames_dir, tmp_path / "serial", *prompt) == 0
    assert _run(exported, frames_dir, tmp_path / "ahead", *prompt, "--encode-ahead") == 0, capsys.readouterr().err
    for obj in ("obj1", "obj2"):
        serial, ahead = tmp_path / "serial" / obj, tmp_path / "ahead" / obj
        names = sorted(path.name for path in (serial / "logits").glob("*.npy"))
        assert names == sorted(path.name for path in (ahead / "logits").glob("*.npy")) and len(names) == FRAMES
        for name in names:
            np.testing.assert_array_equal(np.load(ahead / "logits" / name), np.load(serial / "logits" / name))
        assert (ahead / "masks_coco_rle.json").read_text() == (serial / "masks_coco_rle.json").read_text()


def test_run_encode_ahead_on_the_torch_backend_is_refused_in_one_line(exported, frames_dir, tmp_path, capsys) -> None:
    code = main(["run", "--checkpoint", str(exported[0]), "--backend", "torch", "--mode", "sam2", "--video",
                 str(frames_dir), "--out", str(tmp_path / "out"), "--box", "10", "20", "40", "40", "--encode-ahead"])
    assert code == 2
    assert "does not run two stages at once; onnxruntime on the CPU does" in capsys.readouterr().err
