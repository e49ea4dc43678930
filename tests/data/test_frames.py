"""Frame sources: explicit bit-depth and band handling, and errors naming the frame."""

import cv2
import numpy as np
import pytest

from mqc_edge.data.frames import FrameFormat, frame_count, iter_frames, read_image, to_rgb_uint8
from mqc_edge.errors import BadFrameError


def test_16bit_single_band_scales_with_the_configured_white_point(tmp_path):
    band = np.array([[0, 4095], [2048, 65535]], np.uint16)
    cv2.imwrite(str(tmp_path / "f.png"), band)
    full = read_image(tmp_path / "f.png")
    twelve_bit = read_image(tmp_path / "f.png", FrameFormat(max_value_16bit=4095))
    assert full.shape == (2, 2, 3) and full.dtype == np.uint8
    assert full[0, 1, 0] == round(4095 * 255 / 65535) and full[1, 1, 2] == 255
    assert twelve_bit[0, 1, 0] == 255 and twelve_bit[1, 0, 1] == round(2048 * 255 / 4095)


def test_colour_order_is_rgb_and_fourth_band_dropped(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200  # red
    rgba[..., 3] = 7
    cv2.imwrite(str(tmp_path / "a.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    frame = read_image(tmp_path / "a.png")
    assert frame.shape == (4, 4, 3) and (frame[..., 0] == 200).all() and (frame[..., 1:] == 0).all()


def test_float_frames_are_unit_range_and_nan_is_refused():
    assert to_rgb_uint8(np.full((2, 2), 0.5, np.float32), "x")[0, 0, 0] == 128
    with pytest.raises(BadFrameError, match="frame 3: frame holds NaN"):
        to_rgb_uint8(np.full((2, 2), np.nan, np.float32), "frame 3")
    with pytest.raises(BadFrameError, match=r"got shape \(2, 2, 2\)"):
        to_rgb_uint8(np.zeros((2, 2, 2), np.uint8), "frame 0")


def test_folder_frames_keep_names_and_reject_truncated_file(tmp_path):
    for name in ("00003", "00001"):
        cv2.imwrite(str(tmp_path / f"{name}.jpg"), np.full((8, 8, 3), 90, np.uint8))
    assert [frame.name for frame in iter_frames(tmp_path)] == ["00001", "00003"]
    (tmp_path / "00005.jpg").write_bytes((tmp_path / "00001.jpg").read_bytes()[:20])
    frames = iter_frames(tmp_path)
    assert next(frames).name == "00001" and next(frames).name == "00003"
    with pytest.raises(BadFrameError, match=r"00005\.jpg: unreadable or truncated"):
        next(frames)


def test_size_change_mid_video_names_the_frame():
    arrays = [np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8), np.zeros((9, 8, 3), np.uint8)]
    with pytest.raises(BadFrameError, match="frame 00002 is 8x9, expected 8x8"):
        list(iter_frames(arrays))


def test_video_file_round_trip(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    for value in (40, 120, 200):
        writer.write(np.full((24, 32, 3), value, np.uint8))
    writer.release()
    frames = list(iter_frames(path))
    assert [frame.name for frame in frames] == ["00000", "00001", "00002"]
    assert abs(int(frames[2].rgb.mean()) - 200) <= 3


def test_missing_source_is_named(tmp_path):
    with pytest.raises(BadFrameError, match="no such video file or frame folder"):
        iter_frames(tmp_path / "nope.mp4")


def test_frame_count_for_the_progress_bar(tmp_path):
    for index in range(3):
        cv2.imwrite(str(tmp_path / f"{index:05d}.png"), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "notes.txt").write_text("not a frame")
    writer = cv2.VideoWriter(str(tmp_path / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 5, (16, 16))
    for _ in range(7):
        writer.write(np.zeros((16, 16, 3), np.uint8))
    writer.release()
    assert frame_count(tmp_path) == 3 and frame_count(tmp_path / "clip.mp4") == 7
    assert frame_count(tmp_path / "00000.png") == 1
    assert frame_count([np.zeros((8, 8, 3), np.uint8)]) is None and frame_count(tmp_path / "missing.mp4") is None
