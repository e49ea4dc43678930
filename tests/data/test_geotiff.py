"""GeoTIFF frames through rasterio: band choice, interleave, per-band files, one 8-bit scaling for the
video, NoData kept black, georeference on every frame, and the install hint without the extra."""

import sys
import warnings

import numpy as np
import pytest
import tifffile

from mqc_edge import cli
from mqc_edge.data.frames import FrameFormat, frame_count, iter_frames
from mqc_edge.errors import BadFrameError, ConfigError

rasterio = pytest.importorskip("rasterio")
from rasterio.transform import Affine  # noqa: E402

CRS = "EPSG:32633"
TRANSFORM = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 4000000.0)  # 10 m pixels from (500 km E, 4000 km N), UTM 33N
BAND_VALUES = (1000, 2000, 3000, 4000)
"""Band k of `_bands` holds BAND_VALUES[k - 1] everywhere (raw uint16, 12-bit range)."""


def _bands(count=4, height=3, width=5, dtype=np.uint16):
    return np.stack([np.full((height, width), value, dtype) for value in BAND_VALUES[:count]])


def _write(path, bands, interleave="pixel", nodata=None, tags=None, georeferenced=True):
    """bands [B, H, W] as a GeoTIFF (UTM 33N, TRANSFORM) or as a plain TIFF written by GDAL."""
    profile = dict(driver="GTiff", width=bands.shape[2], height=bands.shape[1], count=bands.shape[0],
                   dtype=bands.dtype, interleave=interleave, nodata=nodata)
    if georeferenced:
        profile.update(crs=CRS, transform=TRANSFORM)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        dataset = rasterio.open(path, "w", **profile)
    with dataset:
        dataset.write(bands)
        dataset.update_tags(**(tags or {}))
    return path


def _one(source, fmt=FrameFormat()):
    [frame] = list(iter_frames(source, fmt))
    return frame


def test_bands_are_taken_in_the_order_asked(tmp_path):
    _write(tmp_path / "f.tif", _bands())
    frame = _one(tmp_path / "f.tif", FrameFormat(bands=(4, 3, 2), max_value_16bit=4095))
    assert frame.rgb.shape == (3, 5, 3) and frame.rgb.dtype == np.uint8
    assert frame.rgb[0, 0].tolist() == [round(value * 255 / 4095) for value in (4000, 3000, 2000)]  # 249, 187, 125


def test_one_band_is_grey_replicated_to_rgb(tmp_path):
    _write(tmp_path / "f.tif", _bands())
    rgb = _one(tmp_path / "f.tif", FrameFormat(bands=(2,), max_value_16bit=4095)).rgb
    assert (rgb == round(2000 * 255 / 4095)).all()


def test_pixel_and_band_interleaved_files_give_the_same_rgb(tmp_path):
    rng = np.random.default_rng(0)
    bands = rng.integers(0, 4096, size=(4, 6, 7), dtype=np.uint16)
    pixel = _write(tmp_path / "pixel.tif", bands, interleave="pixel")
    band = _write(tmp_path / "band.tif", bands, interleave="band")
    assert tifffile.TiffFile(pixel).pages[0].planarconfig == 1 and tifffile.TiffFile(band).pages[0].planarconfig == 2
    fmt = FrameFormat(bands=(3, 2, 1), max_value_16bit=4095)
    expected = np.floor(np.moveaxis(bands[[2, 1, 0]], 0, -1) * np.float32(255 / 4095) + 0.5).astype(np.uint8)
    assert np.array_equal(_one(pixel, fmt).rgb, expected) and np.array_equal(_one(band, fmt).rgb, expected)


def test_per_band_files_make_one_frame_each(tmp_path):
    for frame, offset in (("scene10", 100), ("scene2", 0)):
        for number, value in enumerate(BAND_VALUES, start=1):
            _write(tmp_path / f"{frame}_B{number:02d}.tif", np.full((1, 3, 5), value + offset, np.uint16))
    frames = list(iter_frames(tmp_path, FrameFormat(bands=(4, 3, 2), max_value_16bit=4100)))
    assert [frame.name for frame in frames] == ["scene2", "scene10"] and frame_count(tmp_path) == 2
    assert frames[0].rgb[0, 0].tolist() == [round(value * 255 / 4100) for value in (4000, 3000, 2000)]
    assert frames[1].rgb[0, 0].tolist() == [255, round(3100 * 255 / 4100), round(2100 * 255 / 4100)]
    assert frames[0].georef.transform == tuple(TRANSFORM)[:6]


def test_per_band_files_need_a_band_choice_and_every_band_asked(tmp_path):
    for number in (2, 3, 4):
        _write(tmp_path / f"a_B{number}.tif", np.full((1, 3, 5), 7, np.uint16))
    with pytest.raises(ConfigError, match=r"frame 'a' has one file per band \(bands 2, 3, 4\); choose 1 or 3"):
        list(iter_frames(tmp_path))
    with pytest.raises(BadFrameError, match=r"frame 'a' has no band 1 file \(expected a_B1.tif; it has bands 2, 3"):
        list(iter_frames(tmp_path, FrameFormat(bands=(4, 3, 1))))


def test_per_band_files_of_different_sizes_are_refused_by_name(tmp_path):
    _write(tmp_path / "a_B1.tif", np.full((1, 3, 5), 7, np.uint16))
    _write(tmp_path / "a_B2.tif", np.full((1, 6, 10), 7, np.uint16))
    with pytest.raises(BadFrameError, match=r"a_B2.tif: band 2 is 10x6 uint16, expected 5x3 uint16 like band 1"):
        list(iter_frames(tmp_path, FrameFormat(bands=(1, 2, 1))))


def test_white_point_maps_raw_range_onto_8_bits(tmp_path):
    _write(tmp_path / "f.tif", np.array([[[0, 2048, 4095, 9000]]], np.uint16))
    assert _one(tmp_path / "f.tif", FrameFormat(max_value_16bit=4095)).rgb[0, :, 0].tolist() == [0, 128, 255, 255]
    assert _one(tmp_path / "f.tif").rgb[0, :, 0].tolist() == [0, 8, 16, 35]  # uint16's own range, [0, 65535]


def test_stretch_is_computed_on_the_first_frame_and_kept(tmp_path):
    ramp = np.arange(100, 200, dtype=np.uint16).reshape(1, 10, 10)
    _write(tmp_path / "t0.tif", ramp)
    _write(tmp_path / "t1.tif", ramp + 50)  # the same scene, brighter
    first, second = iter_frames(tmp_path, FrameFormat(stretch=(0, 100)))
    assert first.rgb[0, 0, 0] == 0 and first.rgb[9, 9, 0] == 255  # 100 -> 0, 199 -> 255
    # Frame 1 keeps frame 0's black (100) and white (199): 150 -> 129, not re-stretched to 0.
    assert second.rgb[0, 0, 0] == round(50 * 255 / 99) and (second.rgb[5:, :, 0] == 255).all()
    assert second.rgb.mean() > first.rgb.mean()


def test_nodata_is_black_and_left_out_of_the_stretch(tmp_path):
    values = np.arange(100, 200, dtype=np.uint16).reshape(1, 10, 10)
    values[0, 0, :5] = 0  # NoData
    _write(tmp_path / "f.tif", values, nodata=0)
    rgb = _one(tmp_path / "f.tif", FrameFormat(stretch=(0, 100))).rgb
    assert (rgb[0, :5] == 0).all()
    # With NoData (0) counted, black would be 0 and pixel value 105 would be 135; left out, black is 105.
    assert rgb[0, 5].tolist() == [0, 0, 0] and rgb[9, 9].tolist() == [255, 255, 255]
    assert rgb[5, 0, 0] == round((150 - 105) * 255 / (199 - 105))


def test_nodata_is_black_with_a_white_point(tmp_path):
    _write(tmp_path / "f.tif", np.array([[[-9999, 2048, 4095]]], np.int16), nodata=-9999)
    assert _one(tmp_path / "f.tif", FrameFormat(max_value_16bit=4095)).rgb[0, :, 1].tolist() == [0, 128, 255]


def test_crs_transform_and_time_travel_with_the_frame(tmp_path):
    _write(tmp_path / "f.tif", _bands(3), tags={"TIFFTAG_DATETIME": "2024:05:06 07:08:09"})
    georef = _one(tmp_path / "f.tif").georef
    assert rasterio.crs.CRS.from_wkt(georef.crs_wkt).to_epsg() == 32633
    assert georef.transform == (10.0, 0.0, 500000.0, 0.0, -10.0, 4000000.0)
    assert georef.time == "2024-05-06T07:08:09"


def test_plain_tiff_keeps_the_tifffile_path_and_no_georef(tmp_path):
    _write(tmp_path / "plain.tif", _bands(3), georeferenced=False)
    tifffile.imwrite(tmp_path / "tifffile.tif", np.full((3, 5, 3), 9, np.uint8), photometric="rgb")
    assert _one(tmp_path / "plain.tif").georef is None and _one(tmp_path / "tifffile.tif").georef is None
    assert _one(tmp_path / "plain.tif").rgb[0, 0].tolist() == [4, 8, 12]  # uint16 range, same as tifffile's


def test_band_past_the_last_is_a_one_line_error(tmp_path):
    _write(tmp_path / "f.tif", _bands(4))
    with pytest.raises(ConfigError) as error:
        list(iter_frames(tmp_path / "f.tif", FrameFormat(bands=(5, 3, 2))))
    assert str(error.value) == f"{tmp_path / 'f.tif'}: band 5 asked, the file has 4 (expected band numbers 1..4)"


def test_file_of_other_band_counts_needs_a_band_choice(tmp_path):
    _write(tmp_path / "f.tif", np.stack([_bands(4)[0]] * 5))
    with pytest.raises(ConfigError, match=r"f.tif: 5 bands; expected 1, 3 or 4 without a band choice"):
        list(iter_frames(tmp_path / "f.tif"))


def test_flat_first_frame_cannot_be_stretched(tmp_path):
    _write(tmp_path / "f.tif", _bands(3))
    with pytest.raises(BadFrameError, match=r"f.tif band 1: the 2-98 percentile stretch is flat \(both 1000\)"):
        list(iter_frames(tmp_path / "f.tif", FrameFormat(stretch=(2, 98))))


def test_nan_outside_nodata_is_refused_by_band(tmp_path):
    bands = np.full((3, 2, 2), 0.5, np.float32)
    bands[1, 0, 0] = np.nan
    _write(tmp_path / "f.tif", bands)
    with pytest.raises(BadFrameError, match=r"f.tif band 2: NaN or Inf outside NoData"):
        list(iter_frames(tmp_path / "f.tif"))
    _write(tmp_path / "g.tif", bands, nodata=np.nan)
    assert _one(tmp_path / "g.tif").rgb[0, 0].tolist() == [0, 0, 0]


@pytest.mark.parametrize("fmt, message", [
    (dict(bands=(4, 3)), "bands: expected 1 (grey) or 3 (red, green, blue) band numbers from 1, got 4,3"),
    (dict(bands=(0,)), "bands: expected 1 (grey) or 3"),
    (dict(stretch=(98, 2)), "stretch: expected percentiles 0 <= low < high <= 100, got 98,2"),
    (dict(stretch=(2, 98), max_value_16bit=4095), "stretch and white point both given"),
])
def test_bad_options_are_refused(fmt, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        FrameFormat(**fmt)


def _run_args(*extra):
    return cli.build_parser().parse_args(["run", "--video", "v", "--box", "0", "0", "5", "5", "--out", "o", *extra])


def test_run_options_build_the_frame_format():
    args = _run_args("--bands", "4,3,2", "--stretch", "2,98")
    assert cli._frame_format(args) == FrameFormat(bands=(4, 3, 2), stretch=(2.0, 98.0))
    assert cli._frame_format(_run_args("--white-point", "4095")) == FrameFormat(max_value_16bit=4095)
    assert cli._frame_format(_run_args()) == FrameFormat()


@pytest.mark.parametrize("option, value", [("--bands", "4,x,2"), ("--stretch", "2"), ("--white-point", "0")])
def test_run_options_reject_malformed_values(option, value, capsys):
    with pytest.raises(SystemExit):
        _run_args(option, value)
    assert option in capsys.readouterr().err


def test_without_rasterio_a_band_choice_fails_with_the_install_hint(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "rasterio", None)
    tifffile.imwrite(tmp_path / "f.tif", np.zeros((3, 5, 4), np.uint16), photometric="minisblack",
                     planarconfig="contig")
    with pytest.raises(ConfigError, match=r"pip install 'mqc-edge\[geo\]'"):
        iter_frames(tmp_path / "f.tif", FrameFormat(bands=(4, 3, 2)))
    assert _one(tmp_path / "f.tif").rgb.shape == (3, 5, 3)  # the base install still reads plain TIFFs
    code = cli.main(["run", "--video", str(tmp_path / "f.tif"), "--box", "0", "0", "5", "5", "--bands", "4,3,2",
                     "--out", str(tmp_path / "out")])
    [line] = capsys.readouterr().err.splitlines()
    assert code == 2 and line.endswith("pip install 'mqc-edge[geo]'")


def test_without_rasterio_per_band_files_fail_with_the_install_hint(tmp_path, monkeypatch):
    _write(tmp_path / "a_B1.tif", np.full((1, 3, 5), 7, np.uint16))
    monkeypatch.setitem(sys.modules, "rasterio", None)
    with pytest.raises(ConfigError, match=r"need rasterio: pip install 'mqc-edge\[geo\]'"):
        iter_frames(tmp_path)


def test_bands_and_stretch_are_refused_for_arrays_and_videos(tmp_path):
    with pytest.raises(ConfigError, match="bands and stretch apply to GeoTIFF files read through rasterio, not to arrays"):
        iter_frames([np.zeros((2, 2, 3), np.uint8)], FrameFormat(stretch=(2, 98)))
    (tmp_path / "v.mp4").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"v.mp4: bands and stretch apply to raster images read through GDAL"):
        iter_frames(tmp_path / "v.mp4", FrameFormat(bands=(1,)))


def test_without_rasterio_a_georeferenced_tiff_is_read_by_tifffile(tmp_path, monkeypatch):
    _write(tmp_path / "f.tif", _bands(3))
    monkeypatch.setitem(sys.modules, "rasterio", None)
    frame = _one(tmp_path / "f.tif")
    assert frame.georef is None and frame.rgb[0, 0].tolist() == [4, 8, 12]


@pytest.mark.parametrize("dtype, values", [("uint8", [0, 90, 255]), ("uint16", [0, 2048, 9000]),
                                           ("int16", [-40, 2048, 4095]), ("float32", [-0.5, 0.25, 1.0])])
def test_both_paths_give_the_same_pixels(tmp_path, monkeypatch, dtype, values):
    _write(tmp_path / "f.tif", np.array(values, dtype).reshape(3, 1, 1) * np.ones((3, 2, 4), dtype))
    fmt = FrameFormat(max_value_16bit=4095)
    through_rasterio = _one(tmp_path / "f.tif", fmt)
    monkeypatch.setitem(sys.modules, "rasterio", None)
    through_tifffile = _one(tmp_path / "f.tif", fmt)
    assert through_rasterio.georef is not None and through_tifffile.georef is None
    assert np.array_equal(through_rasterio.rgb, through_tifffile.rgb)
