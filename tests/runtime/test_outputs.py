"""Run outputs: COCO RLE is exact, and frames written before a failure stay on disk."""

import json

import numpy as np
import pytest
from PIL import Image

from mqc_edge.runtime.outputs import OverlayVideo, RunWriter, coco_rle, decode_coco_rle


def test_coco_rle_hand_example_and_round_trip():
    mask = np.array([[0, 1], [1, 1]], bool)  # column-major: 0,1,1,1 -> one zero, three ones
    assert coco_rle(mask)["counts"] == [1, 3]
    assert coco_rle(np.ones((2, 2), bool))["counts"] == [0, 4]
    rng = np.random.default_rng(0)
    random_mask = rng.random((37, 53)) > 0.6
    assert np.array_equal(decode_coco_rle(coco_rle(random_mask)), random_mask)


def test_frames_before_a_failure_are_kept(tmp_path):
    mask = np.zeros((8, 10), bool)
    mask[2:4, 3:7] = True
    with pytest.raises(RuntimeError):
        with RunWriter(tmp_path, save_logits=True) as writer:
            for index in range(3):
                writer.write_frame(f"{index:05d}", mask, {"score": 0.5 + index}, logits=np.full((8, 10), index, np.float32))
            raise RuntimeError("frame 3 failed")
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert [json.loads(line)["score"] for line in lines] == [0.5, 1.5, 2.5]
    assert np.array_equal(np.array(Image.open(tmp_path / "masks" / "00002.png")) == 255, mask)
    assert np.load(tmp_path / "logits" / "00001.npy")[0, 0] == 1.0
    rles = json.loads((tmp_path / "masks_coco_rle.json").read_text())
    assert sorted(rles) == ["00000", "00001", "00002"]
    assert not list(tmp_path.rglob(".*"))  # no temporary files left behind


def test_overlay_video_has_one_frame_per_mask(tmp_path):
    import cv2

    with OverlayVideo(tmp_path / "overlay.mp4", fps=5) as overlay:
        for index in range(4):
            overlay.write(np.zeros((16, 16, 3), np.uint8), [np.eye(16, dtype=bool)])
        assert not (tmp_path / "overlay.mp4").exists()  # renamed into place at close only
    capture = cv2.VideoCapture(str(tmp_path / "overlay.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    assert not list(tmp_path.glob(".*"))
