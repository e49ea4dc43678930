"""Frame sources: explicit bit-depth and band handling, and errors naming the frame."""

import cv2
import numpy as np
import pytest

from mqc_edge.data.frames import FrameFormat, frame_count, iter_frames, natural_key, read_image, to_rgb_uint8
from mqc_edge.errors import BadFrameError, ConfigError


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


def test_folder_frames_sort_digit_runs_as_numbers(tmp_path):
    for index in range(1, 13):
        cv2.imwrite(str(tmp_path / f"{index}.png"), np.full((4, 4, 3), index, np.uint8))
    frames = list(iter_frames(tmp_path))
    assert [frame.name for frame in frames] == [str(index) for index in range(1, 13)]
    assert [int(frame.rgb[0, 0, 0]) for frame in frames] == list(range(1, 13))
    assert sorted(["frame_10.png", "frame_9.png", "frame_9b.png", "frame_09.png"], key=natural_key) == [
        "frame_09.png", "frame_9.png", "frame_9b.png", "frame_10.png"]


def test_duplicate_frame_name_is_one_error_naming_both_files_before_any_frame(tmp_path):
    for name in ("00001.jpg", "00003.jpg", "00003.png"):
        cv2.imwrite(str(tmp_path / name), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(BadFrameError, match=r"00003\.jpg and 00003\.png are both frame '00003'") as error:
        iter_frames(tmp_path)  # raised by the call itself: no frame has been handed out
    assert "\n" not in str(error.value)


def _truncated_avi(path, frames=12):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    rng = np.random.default_rng(1)
    for _ in range(frames):
        writer.write(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))
    writer.release()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def test_truncated_video_yields_its_good_frames_then_names_the_last_one(tmp_path):
    path = _truncated_avi(tmp_path / "cut.avi")
    names = []
    with pytest.raises(BadFrameError) as error:
        for frame in iter_frames(path):
            names.append(frame.name)
    assert 0 < len(names) < 12 and names == [f"{index:05d}" for index in range(len(names))]
    assert f"decoding stopped after frame {names[-1]}: {len(names)} of the 12 frames" in str(error.value)


@pytest.mark.parametrize(
    ("pixels", "fmt", "expected"),
    [
        (np.array([0, 17, 255], np.uint8), FrameFormat(), [0, 17, 255]),
        (np.array([-128, 0, 64, 127], np.int8), FrameFormat(), [0, 0, 129, 255]),
        (np.array([0, 4095, 65535], np.uint16), FrameFormat(), [0, 16, 255]),
        (np.array([0, 2048, 4095, 9000], np.uint16), FrameFormat(max_value_16bit=4095), [0, 128, 255, 255]),
        (np.array([-300, 0, 16384, 32767], np.int16), FrameFormat(), [0, 0, 128, 255]),
        (np.array([-300, 0, 2048, 4095], np.int16), FrameFormat(max_value_16bit=4095), [0, 0, 128, 255]),
        (np.array([-0.5, 0.0, 0.5, 1.0, 3.0], np.float16), FrameFormat(), [0, 0, 128, 255, 255]),
        (np.array([-0.5, 0.0, 0.5, 1.0, 3.0], np.float32), FrameFormat(), [0, 0, 128, 255, 255]),
        (np.array([-0.5, 0.0, 0.5, 1.0, 3.0], np.float64), FrameFormat(), [0, 0, 128, 255, 255]),
    ],
    ids=lambda value: getattr(value, "dtype", None) and str(value.dtype),
)
def test_every_handled_pixel_type_has_its_stated_range(pixels, fmt, expected):
    rgb = to_rgb_uint8(pixels[None], "frame 0", fmt)
    assert rgb.dtype == np.uint8 and rgb[0, :, 0].tolist() == expected
    assert (rgb[..., 0] == rgb[..., 2]).all()


@pytest.mark.parametrize("dtype", [np.bool_, np.int32, np.uint32, np.int64, np.uint64, np.complex64])
def test_pixel_types_without_a_range_are_refused_by_name(dtype):
    with pytest.raises(BadFrameError, match=rf"frame 2: {np.dtype(dtype)} pixels have no stated value range"):
        to_rgb_uint8(np.zeros((2, 2), dtype), "frame 2")


def test_white_point_must_be_positive():
    with pytest.raises(ConfigError, match="max_value_16bit: expected a positive white point, got 0"):
        FrameFormat(max_value_16bit=0)


@pytest.mark.parametrize("bands", [1, 3])
def test_int16_tiff_frames_read_with_negatives_black(tmp_path, bands):
    values = np.array([[-5, 0], [16384, 32767]], np.int16)
    pixels = values if bands == 1 else np.stack([values, values // 2, np.zeros_like(values)], axis=-1)
    cv2.imwrite(str(tmp_path / "f.tif"), pixels if bands == 1 else pixels[..., ::-1])  # OpenCV writes BGR
    frame = read_image(tmp_path / "f.tif")
    assert frame[..., 0].tolist() == [[0, 0], [128, 255]]
    assert frame[..., 1].tolist() == ([[0, 0], [128, 255]] if bands == 1 else [[0, 0], [64, 127]])


def test_32bit_integer_tiff_is_refused_by_name(tmp_path):
    cv2.imwrite(str(tmp_path / "f.tif"), np.zeros((2, 2), np.int32))
    with pytest.raises(BadFrameError, match=r"f\.tif: int32 pixels have no stated value range"):
        read_image(tmp_path / "f.tif")
