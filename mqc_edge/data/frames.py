"""Frame sources: a folder of images, a video file, a multi-page TIFF, or numpy arrays, as uint8 RGB frames.

Satellite frames are often 16-bit, signed, float or multi-band, so conversion to 8-bit RGB is
explicit and configurable (`FrameFormat`), never a silent guess by an image library. Every error
names the frame (file, page or index) and what was expected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import cv2
import numpy as np

from mqc_edge.data.georef import GeoReference
from mqc_edge.data.tiff import tiff_frame_count, tiff_frame_pages
from mqc_edge.errors import BadFrameError, ConfigError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
TIFF_SUFFIXES = (".tif", ".tiff")


@dataclass(frozen=True)
class FrameFormat:
    """How raw pixel values become 8-bit RGB: each pixel type has a stated range [0, white point],
    mapped linearly onto [0, 255] (rounded, values outside clipped):

    - uint8: [0, 255], unchanged;
    - uint16: [0, max_value_16bit], by default [0, 65535];
    - int16: [0, max_value_16bit], by default [0, 32767]; negative values are black;
    - int8: [0, 127]; negative values are black;
    - float16, float32, float64: [0, 1] (reflectance); NaN or Inf is refused;
    - bool, 32- and 64-bit integers, complex: refused by name (no agreed range: scale them first).

    GeoTIFF frames read through rasterio (`data.geotiff`, the `[geo]` extra) follow the same ranges
    and add a band choice and a percentile stretch (which replaces the ranges above).
    """

    max_value_16bit: int | None = None
    """White point of 16-bit integer frames (uint16 and int16), in raw units. None: the type's
    maximum (65535, 32767). 4095 or 16383 suit 12- or 14-bit sensors stored in 16-bit containers
    (common for satellite video): raw [0, N] -> [0, 255]. The CLI's `--white-point`."""

    bands: tuple[int, ...] | None = None
    """GeoTIFF bands shown as red, green, blue (3 numbers) or as grey (1), GDAL's 1-based numbers
    (`--bands 4,3,2`). None: band 1 of a 1-band file, bands 1, 2, 3 of a 3- or 4-band file. Read
    through rasterio (`data.geotiff`); without the `[geo]` extra a ConfigError."""

    stretch: tuple[float, float] | None = None
    """Low and high percentiles (0..100) of each band's valid pixels in the FIRST frame, mapped to 0 and
    255 and kept for the whole video, so the tracker's memory sees stable brightness (`--stretch 2,98`;
    2-98 is the usual display stretch of GIS tools). None: the white point. Read through rasterio."""

    check_size: bool = True
    """Reject a frame whose size differs from the first one: memory features are spatial, a
    size change mid-video would silently mis-align them."""

    def __post_init__(self) -> None:
        if self.max_value_16bit is not None and self.max_value_16bit <= 0:
            raise ConfigError(f"max_value_16bit: expected a positive white point, got {self.max_value_16bit}")
        if self.bands is not None and (len(self.bands) not in (1, 3) or min(self.bands) < 1):
            raise ConfigError(f"bands: expected 1 (grey) or 3 (red, green, blue) band numbers from 1, got "
                              f"{','.join(map(str, self.bands))}")
        if self.stretch is not None and not 0 <= self.stretch[0] < self.stretch[1] <= 100:
            raise ConfigError(f"stretch: expected percentiles 0 <= low < high <= 100, got "
                              f"{','.join(f'{value:g}' for value in self.stretch)}")
        if self.stretch is not None and self.max_value_16bit is not None:
            raise ConfigError("stretch and white point both given; expected one way to scale to 8 bits")

    @property
    def needs_gdal(self) -> bool:
        """Whether this format only rasterio (the `[geo]` extra) can serve: a band choice or a stretch."""
        return self.bands is not None or self.stretch is not None


@dataclass(frozen=True)
class Frame:
    name: str
    """Stem of the input file, or the zero-padded index for videos, TIFF pages and arrays."""
    rgb: np.ndarray
    """uint8 [H, W, 3], RGB order."""
    georef: GeoReference | None = None
    """Map position of the pixels, for georeferenced sources (GeoTIFF through rasterio); else None."""


def white_point(dtype: np.dtype, fmt: FrameFormat, where: str) -> float:
    """The raw value that becomes 255 for pixels of `dtype` (ranges: `FrameFormat`)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return 1.0
    if dtype in (np.uint16, np.int16) and fmt.max_value_16bit is not None:
        return float(fmt.max_value_16bit)
    if dtype.kind in "ui" and dtype.itemsize <= 2:
        return float(np.iinfo(dtype).max)
    raise BadFrameError(
        f"{where}: {dtype} pixels have no stated value range; expected uint8, uint16, int8, int16 or "
        f"float (scale {dtype} data to one of these first)"
    )


def to_rgb_uint8(pixels: np.ndarray, where: str, fmt: FrameFormat = FrameFormat()) -> np.ndarray:
    """Normalise a [H, W], [H, W, 1], [H, W, 3] or [H, W, 4] array to RGB uint8 [H, W, 3].

    Channel order is taken as RGB(A); the 4th band (alpha, or near-infrared in RGBN imagery) is
    dropped. Value ranges per pixel type: `FrameFormat`.
    """
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 3, 4) or min(pixels.shape[:2]) < 1:
        raise BadFrameError(f"{where}: expected [H, W] or [H, W, 1|3|4] pixels, got shape {pixels.shape}")
    scaled = pixels[:, :, :3] if pixels.dtype == np.uint8 else _scaled_to_uint8(pixels[:, :, :3], where, fmt)
    if scaled.shape[2] == 1:
        scaled = np.repeat(scaled, 3, axis=2)
    return np.ascontiguousarray(scaled)


def _scaled_to_uint8(pixels: np.ndarray, where: str, fmt: FrameFormat) -> np.ndarray:
    """[0, white point] -> [0, 255], rounded half up; negative values become 0, above white 255."""
    white = white_point(pixels.dtype, fmt, where)
    if pixels.dtype.kind == "f" and not np.isfinite(pixels).all():
        raise BadFrameError(f"{where}: frame holds NaN or Inf values")
    return np.clip(pixels.astype(np.float32) * np.float32(255.0 / white) + 0.5, 0, 255).astype(np.uint8)


def read_image(path: Path, fmt: FrameFormat = FrameFormat()) -> np.ndarray:
    """Read one image file (a pixel type of `FrameFormat`, 1/3/4 bands) as uint8 RGB.

    A TIFF's bands are its channels whatever its photometric tag says (`data.tiff`); a multi-page
    TIFF is a video (give it to `iter_frames`) and is refused here rather than read as its first page.
    """
    if not Path(path).is_file():
        raise BadFrameError(f"{path}: frame file missing")
    if Path(path).suffix.lower() in TIFF_SUFFIXES:
        return _one_tiff_page(Path(path), fmt)
    return _opencv_image(Path(path), fmt)


def _opencv_image(path: Path, fmt: FrameFormat) -> np.ndarray:
    """Any other image file, decoded by OpenCV (np.fromfile reads paths OpenCV's imread chokes on)."""
    data = np.fromfile(path, dtype=np.uint8)
    pixels = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if pixels is None:
        raise BadFrameError(f"{path}: unreadable or truncated image")
    if pixels.ndim == 3 and pixels.shape[2] in (3, 4):
        pixels = pixels[:, :, 2::-1]  # OpenCV's BGR(A) -> RGB; a slice works for every pixel type
    return to_rgb_uint8(pixels, str(path), fmt)


def natural_key(name: str) -> tuple[tuple[str | int, ...], str]:
    """Sort key comparing digit runs as numbers: 2.png before 10.png, as Meta's loader orders frames
    (it sorts int(stem)); the name itself breaks ties such as 1.png and 01.png."""
    parts = re.split(r"(\d+)", name)
    return tuple(int(part) if index % 2 else part for index, part in enumerate(parts)), name


def frame_files(folder: Path) -> list[Path]:
    """The image files of a frame folder in natural order; BadFrameError when there is none, or
    when two files share a stem (frame names are stems: their outputs would overwrite each other)."""
    files = sorted((path for path in folder.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES),
                   key=lambda path: natural_key(path.name))
    if not files:
        raise BadFrameError(f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    first_with_stem: dict[str, Path] = {}
    for path in files:
        if path.stem in first_with_stem:
            raise BadFrameError(f"{folder}: {first_with_stem[path.stem].name} and {path.name} are both frame "
                                f"{path.stem!r}; expected one file per frame name")
        first_with_stem[path.stem] = path
    return files


def _folder_frames(files: list[Path], fmt: FrameFormat) -> Iterator[Frame]:
    for path in files:
        yield Frame(path.stem, read_image(path, fmt))


def _video_frames(path: Path, fmt: FrameFormat) -> Iterator[Frame]:
    """Decoded frames, then BadFrameError if they are fewer than the container declares (a truncated
    or damaged file): the caller has the good frames and learns that the rest was lost. A stream
    whose container declares no count cannot be checked; one that over-declares (a duration-based
    estimate, as in some variable-frame-rate Matroska files) ends in this error too."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise BadFrameError(f"{path}: cannot open video")
    declared = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    decoded = 0
    try:
        while (bgr := _next_video_frame(capture)) is not None:
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            yield Frame(f"{decoded:05d}", to_rgb_uint8(rgb, f"{path} frame {decoded}", fmt))
            decoded += 1
    finally:
        capture.release()
    if decoded == 0:
        raise BadFrameError(f"{path}: video holds no decodable frame (its container declares {max(declared, 0)})")
    if decoded < declared:
        raise BadFrameError(f"{path}: decoding stopped after frame {decoded - 1:05d}: {decoded} of the {declared} "
                            f"frames its container declares (truncated or damaged file)")


def _next_video_frame(capture: cv2.VideoCapture) -> np.ndarray | None:
    """The next BGR frame, or None at the end of the stream or on a decode error."""
    try:
        ok, bgr = capture.read()
    except cv2.error:
        return None
    return bgr if ok else None


def _one_tiff_page(path: Path, fmt: FrameFormat) -> np.ndarray:
    pages = tiff_frame_count(path)
    if pages > 1:
        raise BadFrameError(f"{path}: a TIFF stack of {pages} pages; give it as the video, not as one frame")
    [pixels] = tiff_frame_pages(path)
    return to_rgb_uint8(pixels, str(path), fmt)


def _tiff_frames(path: Path, fmt: FrameFormat) -> Iterator[Frame]:
    """A TIFF as a video: one frame per full-resolution page, named 00000, 00001, ...; a one-page
    TIFF is one frame named by its stem, like any image. Pages are decoded one at a time."""
    if tiff_frame_count(path) == 1:
        return iter([Frame(path.stem, _one_tiff_page(path, fmt))])
    return (Frame(f"{number:05d}", to_rgb_uint8(pixels, f"{path} page {number}", fmt))
            for number, pixels in enumerate(tiff_frame_pages(path)))


def _array_frames(arrays: Iterable[np.ndarray], fmt: FrameFormat) -> Iterator[Frame]:
    for index, pixels in enumerate(arrays):
        yield Frame(f"{index:05d}", to_rgb_uint8(np.asarray(pixels), f"frame {index}", fmt))


def _checked_sizes(frames: Iterator[Frame], source: str) -> Iterator[Frame]:
    first_shape = None
    for frame in frames:
        if first_shape is None:
            first_shape = frame.rgb.shape
        elif frame.rgb.shape != first_shape:
            raise BadFrameError(
                f"{source}: frame {frame.name} is {frame.rgb.shape[1]}x{frame.rgb.shape[0]}, "
                f"expected {first_shape[1]}x{first_shape[0]} like the first frame"
            )
        yield frame


def frame_count(source: Path | str | Iterable[np.ndarray]) -> int | None:
    """How many frames `source` holds, for a progress bar's ETA: image files in a folder, pages of
    a TIFF, frames of a folder of per-band files (`data.geotiff`), the container's count for a video (an
    estimate some codecs get wrong), None for arrays."""
    if not isinstance(source, (str, Path)) or not Path(source).exists():
        return None
    from mqc_edge.data.geotiff import band_files  # imported here: geotiff builds on this module

    path = Path(source)
    if path.is_dir():
        per_band = band_files(path)
        return len(per_band) if per_band is not None else sum(1 for item in path.iterdir()
                                                              if item.suffix.lower() in IMAGE_SUFFIXES)
    if path.suffix.lower() in TIFF_SUFFIXES:
        return _tiff_page_count(path)
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        return 1
    capture = cv2.VideoCapture(str(path))
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
    capture.release()
    return count if count > 0 else None


def _tiff_page_count(path: Path) -> int | None:
    try:
        return tiff_frame_count(path)
    except BadFrameError:
        return None  # iter_frames will say what is wrong


def iter_frames(source: Path | str | Iterable[np.ndarray], fmt: FrameFormat = FrameFormat()) -> Iterator[Frame]:
    """Stream frames lazily (constant memory for any video length) from a folder, file or arrays.

    A folder's files come in natural order (`natural_key`), its names checked (`frame_files`)
    before the first frame; a video raises BadFrameError after its last good frame when it holds
    fewer frames than its container declares; a multi-page TIFF is a video of its pages. GeoTIFF
    sources go through rasterio (`data.geotiff`, which states when) and carry `Frame.georef`.
    """
    if isinstance(source, (str, Path)):
        frames, label = _path_frames(Path(source), fmt), str(source)
    elif fmt.needs_gdal:
        raise ConfigError("bands and stretch apply to GeoTIFF files read through rasterio, not to arrays")
    else:
        frames, label = _array_frames(source, fmt), "frames"
    return _checked_sizes(frames, label) if fmt.check_size else frames


def _path_frames(path: Path, fmt: FrameFormat) -> Iterator[Frame]:
    from mqc_edge.data import geotiff  # imported here: geotiff builds on this module

    if not path.exists():
        raise BadFrameError(f"{path}: no such video file or frame folder")
    if geotiff.reads_through_gdal(path, fmt):
        return geotiff.geotiff_frames(path, fmt)
    suffix = path.suffix.lower()
    if path.is_dir():
        return _folder_frames(frame_files(path), fmt)
    if suffix in VIDEO_SUFFIXES:
        return _video_frames(path, fmt)
    if suffix in TIFF_SUFFIXES:
        return _tiff_frames(path, fmt)
    if suffix in IMAGE_SUFFIXES:
        return iter([Frame(path.stem, read_image(path, fmt))])
    raise BadFrameError(f"{path}: not a frame folder, image or video ({', '.join(VIDEO_SUFFIXES)})")
