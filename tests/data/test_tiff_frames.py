"""TIFF frames as remote-sensing tools write them: multi-band grey-photometric (GDAL's default for
non-byte data), band-interleaved, compressed, BigTIFF, and multi-page stacks given as the video."""

import numpy as np
import pytest
import tifffile

from mqc_edge.data.frames import FrameFormat, frame_count, iter_frames, read_image
from mqc_edge.errors import BadFrameError

BANDS = {"uint8": [10, 128, 255, 7], "uint16": [1000, 30000, 65535, 7], "int16": [-40, 16384, 32767, 7],
         "float32": [0.0, 0.5, 1.0, 7.0]}
"""One value per band (band 4 should be dropped), and what each becomes as RGB uint8."""
EXPECTED_RGB = {"uint8": [10, 128, 255], "uint16": [4, 117, 255], "int16": [0, 128, 255], "float32": [0, 128, 255]}


def _bands(dtype: str, count: int) -> np.ndarray:
    return np.stack([np.full((3, 5), value) for value in BANDS[dtype][:count]], axis=-1).astype(dtype)


def _stack(path, pages, overview=None):
    """One `write` call per page (tifffile makes each its own series), then a reduced-resolution
    copy of the first page in the chain, as GDAL stores overviews."""
    with tifffile.TiffWriter(path) as tif:
        for page in pages:
            tif.write(page, photometric="minisblack")
        if overview is not None:
            tif.write(overview, photometric="minisblack", subfiletype=1)
    return path


@pytest.mark.parametrize("bigtiff", [False, True], ids=["tiff", "bigtiff"])
@pytest.mark.parametrize("count", [3, 4])
@pytest.mark.parametrize("dtype", sorted(BANDS))
def test_grey_photometric_bands_are_read_as_channels(tmp_path, dtype, count, bigtiff):
    path = tmp_path / "f.tif"
    tifffile.imwrite(path, _bands(dtype, count), photometric="minisblack", planarconfig="contig", bigtiff=bigtiff)
    frame = read_image(path)
    assert frame.shape == (3, 5, 3) and (frame == EXPECTED_RGB[dtype]).all()


@pytest.mark.parametrize("dtype", sorted(BANDS))
def test_rgb_photometric_reads_the_same(tmp_path, dtype):
    tifffile.imwrite(tmp_path / "f.tif", _bands(dtype, 3), photometric="rgb")
    assert (read_image(tmp_path / "f.tif") == EXPECTED_RGB[dtype]).all()


@pytest.mark.parametrize("compression", [None, "lzw", "zlib"])
@pytest.mark.parametrize("photometric", ["minisblack", "rgb"])
@pytest.mark.parametrize("dtype", sorted(BANDS))
def test_band_interleaved_bands_are_read_for_every_sample_type(tmp_path, dtype, photometric, compression):
    bands_first = np.moveaxis(_bands(dtype, 3), -1, 0)  # tifffile takes planar data as [bands, H, W]
    tifffile.imwrite(tmp_path / "planar.tif", bands_first, photometric=photometric, planarconfig="separate",
                     compression=compression)
    frame = read_image(tmp_path / "planar.tif")
    assert frame.shape == (3, 5, 3) and (frame == EXPECTED_RGB[dtype]).all()


def test_big_endian_16bit_bands_keep_the_configured_white_point(tmp_path):
    tifffile.imwrite(tmp_path / "f.tif", np.full((2, 3, 3), 2048, np.uint16), photometric="rgb", byteorder=">")
    assert (read_image(tmp_path / "f.tif", FrameFormat(max_value_16bit=4095)) == 128).all()


@pytest.mark.parametrize("count", [2, 5])
def test_band_counts_without_rgb_meaning_are_refused_by_name(tmp_path, count):
    tifffile.imwrite(tmp_path / "f.tif", np.zeros((3, 5, count), np.uint16), photometric="minisblack",
                     planarconfig="contig")
    with pytest.raises(BadFrameError, match=rf"f\.tif page 0: {count} bands; expected 1 \(grey\), 3 \(RGB\) or 4"):
        read_image(tmp_path / "f.tif")


def test_palette_indices_are_read_as_their_colours(tmp_path):
    colormap = np.zeros((3, 256), np.uint16)
    colormap[:, 1] = [65535, 32896, 0]
    tifffile.imwrite(tmp_path / "f.tif", np.array([[0, 1]], np.uint8), photometric="palette", colormap=colormap)
    assert read_image(tmp_path / "f.tif").tolist() == [[[0, 0, 0], [255, 128, 0]]]


def test_jpeg_compressed_ycbcr_is_read_as_rgb(tmp_path):
    rgb = np.broadcast_to(np.array([200, 100, 50], np.uint8), (16, 16, 3))
    tifffile.imwrite(tmp_path / "f.tif", rgb, photometric="rgb", compression="jpeg")  # stored as YCbCr
    with tifffile.TiffFile(tmp_path / "f.tif") as tif:
        assert tif.pages[0].photometric == tifffile.PHOTOMETRIC.YCBCR
    assert np.abs(read_image(tmp_path / "f.tif").astype(int) - rgb).max() <= 2


def test_photometric_without_an_rgb_reading_is_refused_by_name(tmp_path):
    tifffile.imwrite(tmp_path / "f.tif", np.zeros((2, 2), np.uint8), photometric="miniswhite")
    with pytest.raises(BadFrameError, match=r"f\.tif page 0: photometric MINISWHITE pixels; expected MINISBLACK"):
        read_image(tmp_path / "f.tif")


def test_multi_page_tiff_is_a_video_of_its_pages_without_overviews_or_masks(tmp_path):
    pages = [np.full((4, 6), 1000 * page, np.uint16) for page in range(8)]
    path = _stack(tmp_path / "stack.tif", pages, overview=np.zeros((2, 3), np.uint16))
    with tifffile.TiffWriter(path, append=True) as tif:  # tifffile writes no mask: mark a page as one
        tif.write(np.zeros((4, 6), np.uint16), photometric="minisblack", subfiletype=1)
    with tifffile.TiffFile(path, mode="r+") as tif:
        tif.pages[-1].tags["NewSubfileType"].overwrite(4)
    frames = list(iter_frames(path))
    assert [frame.name for frame in frames] == [f"{page:05d}" for page in range(8)]
    assert [int(frame.rgb[0, 0, 0]) for frame in frames] == [round(1000 * page * 255 / 65535) for page in range(8)]
    assert frame_count(path) == 8
    with pytest.raises(BadFrameError, match="a TIFF stack of 8 pages; give it as the video"):
        read_image(path)


def test_pyramid_levels_in_subifds_are_not_frames(tmp_path):
    path = tmp_path / "pyramid.tif"
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        for page in range(3):
            tif.write(np.full((8, 8, 3), 50 * page, np.uint8), photometric="rgb", subifds=1)
            tif.write(np.zeros((4, 4, 3), np.uint8), photometric="rgb", subfiletype=1)
    assert [int(frame.rgb[0, 0, 0]) for frame in iter_frames(path)] == [0, 50, 100] and frame_count(path) == 3


def test_one_page_tiff_is_one_frame_named_by_its_stem(tmp_path):
    path = tmp_path / "scene_7.tif"
    tifffile.imwrite(path, _bands("uint16", 3), photometric="minisblack", planarconfig="contig")
    [frame] = iter_frames(path)
    assert frame.name == "scene_7" and (frame.rgb == EXPECTED_RGB["uint16"]).all() and frame_count(path) == 1


def test_stack_cut_between_pages_is_named_not_shortened(tmp_path):
    path = _stack(tmp_path / "cut.tif", [np.full((4, 6), page, np.uint16) for page in range(8)])
    with tifffile.TiffFile(path) as tif:
        fifth_directory = tif.pages[5].offset
    path.write_bytes(path.read_bytes()[:fifth_directory])  # pages 0-4 whole, page 4 links past the end
    with pytest.raises(BadFrameError, match=r"cut\.tif: unreadable or truncated TIFF \(its image directories end"):
        list(iter_frames(path))
    assert frame_count(path) is None


def test_truncated_pixel_data_names_the_page(tmp_path):
    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, _bands("uint16", 3), photometric="minisblack", planarconfig="contig")
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(BadFrameError, match=r"cut\.tif page 0: unreadable or truncated image data"):
        read_image(path)


@pytest.mark.parametrize("content", [b"", b"II*\x00", b"\x89PNG\r\n\x1a\n not a tiff"], ids=["empty", "header", "png"])
def test_a_file_that_is_no_tiff_is_named(tmp_path, content):
    (tmp_path / "f.tif").write_bytes(content)
    with pytest.raises(BadFrameError, match=r"f\.tif: unreadable or truncated TIFF"):
        read_image(tmp_path / "f.tif")
