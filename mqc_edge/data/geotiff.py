"""Remote-sensing frames through rasterio (GDAL): chosen bands, one 8-bit scaling for the whole video,
NoData kept out of the image, and each frame's map position on `Frame.georef`.

Needs the `[geo]` extra; rasterio is imported only when a frame is read here, so the base install
imports this module freely. `iter_frames` reads a source here (`reads_through_gdal`) when the
format asks for bands or a stretch, when the source is a folder of per-band files, or when rasterio
is installed and the (first) TIFF carries GeoTIFF tags; every other source keeps its tifffile or
OpenCV path.

Layouts:
- one file per frame, in a folder (natural order, `frames.frame_files`) or alone: a GeoTIFF (or any
  file GDAL opens) of 1..n bands, pixel- or band-interleaved;
- one file per band: a folder whose image files are all TIFFs named `<frame>_B<n>.tif` (n the GDAL
  band number, B4 and B04 alike, as Landsat and Sentinel-2 name their band files; one band each).
  A name outside the rule (such as Sentinel-2's B8A) makes it a folder of one file per frame.
A multi-page TIFF stack is refused here: tifffile reads it as a video, without georeferencing.

Bands (`FrameFormat.bands`, GDAL's 1-based numbers as red, green, blue, or one as grey): by default
band 1 of a 1-band file, bands 1, 2, 3 of a 3- or 4-band file; other counts must choose.

Scaling, per band, raw [black, white] -> [0, 255], rounded, clipped:
- `FrameFormat.stretch` (low, high percentiles): black and white are those percentiles of each band's
  valid pixels in the FIRST frame, kept for the whole video, so the tracker's memory sees stable
  brightness (a later, brighter frame comes out brighter, not re-stretched);
- otherwise [0, white point] of `frames.white_point`, as for every other source: the same file and
  options give the same pixels whichever path reads them (uint16 and int16 up to
  `FrameFormat.max_value_16bit` when set; 32-bit integers have no stated range: use a stretch).

NoData: a pixel that the GDAL mask of any selected band marks invalid (the file's nodata value, an
internal mask or an alpha band) is black, (0, 0, 0), and is left out of the stretch statistics.
NaN or Inf in a valid pixel is a BadFrameError.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterator

import numpy as np
import tifffile

from mqc_edge.data.frames import (
    IMAGE_SUFFIXES, TIFF_SUFFIXES, VIDEO_SUFFIXES, Frame, FrameFormat, frame_files, natural_key, white_point,
)
from mqc_edge.data.georef import GeoReference
from mqc_edge.errors import BadFrameError, ConfigError

INSTALL_HINT = "pip install 'mqc-edge[geo]'"
BAND_FILE = re.compile(r"^(?P<frame>.+)_B(?P<band>\d+)$", re.IGNORECASE)
"""Stem of a per-band file: `<frame>_B<n>`."""
GEOTIFF_TAGS = (33550, 33922, 34264, 34735)
"""ModelPixelScale, ModelTiepoint, ModelTransformation, GeoKeyDirectory: a TIFF with any is georeferenced."""
TIME_TAGS = ("ACQUISITIONDATETIME", "ACQUISITION_DATETIME", "DATETIME", "TIFFTAG_DATETIME")
"""GDAL metadata items read as the acquisition time, first found wins (TIFF DateTime last)."""


@dataclass(frozen=True)
class RawFrame:
    """One frame's selected bands as stored, before scaling."""

    bands: np.ndarray
    """[B, H, W] raw values of the selected bands, in the order asked (B = 1 or 3)."""
    valid: np.ndarray
    """bool [H, W]: False where any selected band is NoData."""
    numbers: tuple[int, ...]
    """GDAL band numbers of `bands`, for errors."""
    where: str
    """The file (the first band's file for per-band frames), for errors."""
    georef: GeoReference | None
    """CRS and transform of the file, None for an image with neither."""


def rasterio_module():
    """The rasterio module; ConfigError with the install hint when the `[geo]` extra is missing."""
    try:
        import rasterio
    except ImportError:
        raise ConfigError(f"GeoTIFF bands, stretch and georeferencing need rasterio: {INSTALL_HINT}") from None
    return rasterio


def rasterio_installed() -> bool:
    """Whether the `[geo]` extra is importable."""
    try:
        rasterio_module()
    except ConfigError:
        return False
    return True


def reads_through_gdal(path: Path, fmt: FrameFormat) -> bool:
    """Whether `iter_frames` reads the existing file or folder `path` here (rule: module docstring).
    Plain TIFFs (no GeoTIFF tags) and georeferenced ones without rasterio keep the tifffile path."""
    if fmt.needs_gdal:
        return True
    if path.is_dir():
        if band_files(path) is not None:
            return True
        path = frame_files(path)[0]
    return path.suffix.lower() in TIFF_SUFFIXES and _has_geotiff_tags(path) and rasterio_installed()


def _has_geotiff_tags(path: Path) -> bool:
    """Whether the first page of a single-page TIFF carries GeoTIFF tags; False for stacks and for
    files tifffile cannot open (the tifffile path then says what is wrong)."""
    try:
        with tifffile.TiffFile(path) as tif:
            return len(tif.pages) == 1 and any(tag in tif.pages[0].tags for tag in GEOTIFF_TAGS)
    except Exception:  # tifffile raises many types on damaged files
        return False


def band_files(folder: Path) -> dict[str, dict[int, Path]] | None:
    """The per-band layout of `folder`, {frame: {band number: file}} in natural frame order, or None
    when not every image file is a TIFF named `<frame>_B<n>`. BadFrameError when two files hold the
    same band of a frame (x_B4.tif and x_B04.tif)."""
    files = [path for path in folder.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES]
    matches = [BAND_FILE.match(path.stem) if path.suffix.lower() in TIFF_SUFFIXES else None for path in files]
    if not files or not all(matches):
        return None
    frames: dict[str, dict[int, Path]] = {}
    for path, match in sorted(zip(files, matches), key=lambda pair: natural_key(pair[0].name)):
        bands, band = frames.setdefault(match["frame"], {}), int(match["band"])
        if band in bands:
            raise BadFrameError(f"{folder}: {bands[band].name} and {path.name} are both band {band} of frame "
                                f"{match['frame']!r}; expected one file per band")
        bands[band] = path
    return dict(sorted(frames.items(), key=lambda item: natural_key(item[0])))


def geotiff_frames(path: Path, fmt: FrameFormat) -> Iterator[Frame]:
    """Frames of a GeoTIFF file or folder (layouts: module docstring), uint8 RGB [H, W, 3] with
    `georef` set for georeferenced files, read one at a time. Raises ConfigError without rasterio,
    for a video file, or for a band number a file lacks; BadFrameError for an unreadable file, a
    missing band file, a multi-page stack, bands of different sizes or types, or a frame the
    stretch cannot measure."""
    rasterio_module()
    if path.suffix.lower() in VIDEO_SUFFIXES:
        raise ConfigError(f"{path}: bands and stretch apply to raster images read through GDAL, not to video files")
    return _scaled_frames(_raw_frames(path, fmt), fmt)


def _raw_frames(path: Path, fmt: FrameFormat) -> Iterator[tuple[str, RawFrame]]:
    if not path.is_dir():
        yield path.stem, read_bands(path, fmt.bands)
        return
    per_band = band_files(path)
    if per_band is None:
        for file in frame_files(path):
            yield file.stem, read_bands(file, fmt.bands)
        return
    for frame, files in per_band.items():
        yield frame, read_band_files(path, frame, files, fmt.bands)


def _scaled_frames(raw_frames: Iterator[tuple[str, RawFrame]], fmt: FrameFormat) -> Iterator[Frame]:
    """Scale each frame to 8 bits; a stretch's black and white come from the first frame alone."""
    kept: tuple[np.ndarray, np.ndarray] | None = None
    for name, raw in raw_frames:
        _check_finite(raw)
        if fmt.stretch is None:
            black, white = _white_point_range(raw, fmt)
        else:
            kept = kept or stretch_range(raw, fmt.stretch)
            black, white = kept
        yield Frame(name, to_rgb(raw, black, white), raw.georef)


def read_bands(path: Path, wanted: tuple[int, ...] | None, one_band_file: bool = False) -> RawFrame:
    """The `wanted` bands (default: module docstring) of one file, their NoData mask and georeference;
    with `one_band_file`, BadFrameError unless the file holds exactly one band."""
    rasterio = rasterio_module()
    with _opened(rasterio, path) as dataset:
        if dataset.subdatasets:
            raise BadFrameError(f"{path}: a TIFF stack of {len(dataset.subdatasets)} pages; expected one page per "
                                f"GeoTIFF frame (without bands or stretch it is read as a video, ungeoreferenced)")
        if one_band_file and dataset.count != 1:
            raise BadFrameError(f"{path}: {dataset.count} bands in a per-band file; expected 1")
        numbers = wanted or _default_bands(dataset.count, path)
        for number in numbers:
            if number > dataset.count:
                raise ConfigError(f"{path}: band {number} asked, the file has {dataset.count} "
                                  f"(expected band numbers 1..{dataset.count})")
        bands, masks = _read(rasterio, path, lambda: (dataset.read(list(numbers)), dataset.read_masks(list(numbers))))
        return RawFrame(bands, (masks != 0).all(axis=0), numbers, str(path), _georeference(dataset))


def read_band_files(folder: Path, frame: str, files: dict[int, Path], wanted: tuple[int, ...] | None) -> RawFrame:
    """The `wanted` bands of a frame stored one band per file (`<frame>_B<n>.tif`); every file must hold
    one band of the first file's size and type. The georeference is the first file's."""
    if wanted is None and len(files) > 1:
        raise ConfigError(f"{folder}: frame {frame!r} has one file per band (bands {', '.join(map(str, files))}); "
                          f"choose 1 or 3 with --bands, e.g. --bands 3,2,1")
    parts = []
    for number in wanted or tuple(files):
        if number not in files:
            raise BadFrameError(f"{folder}: frame {frame!r} has no band {number} file (expected {frame}_B{number}.tif; "
                                f"it has bands {', '.join(map(str, sorted(files)))})")
        part = read_bands(files[number], (1,), one_band_file=True)
        if parts and (part.bands.shape, part.bands.dtype) != (parts[0].bands.shape, parts[0].bands.dtype):
            raise BadFrameError(f"{files[number]}: band {number} is {_describe(part)}, expected {_describe(parts[0])} "
                                f"like band {parts[0].numbers[0]} of frame {frame!r}")
        parts.append(RawFrame(part.bands, part.valid, (number,), part.where, part.georef))
    return RawFrame(np.concatenate([part.bands for part in parts]), np.logical_and.reduce([p.valid for p in parts]),
                    tuple(part.numbers[0] for part in parts), parts[0].where, parts[0].georef)


def _describe(raw: RawFrame) -> str:
    return f"{raw.bands.shape[2]}x{raw.bands.shape[1]} {raw.bands.dtype}"


def _default_bands(count: int, path: Path) -> tuple[int, ...]:
    if count == 1:
        return (1,)
    if count in (3, 4):
        return (1, 2, 3)
    raise ConfigError(f"{path}: {count} bands; expected 1, 3 or 4 without a band choice; choose 1 or 3 with "
                      f"--bands, e.g. --bands 4,3,2")


def _opened(rasterio, path: Path):
    """The dataset at `path`, opened without GDAL's warning about plain (ungeoreferenced) images."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        return _read(rasterio, path, lambda: rasterio.open(path))


def _read(rasterio, path: Path, action):
    try:
        return action()
    except rasterio.errors.RasterioError as error:
        raise BadFrameError(f"{path}: unreadable or truncated raster ({error})") from None


def _georeference(dataset) -> GeoReference | None:
    """CRS as WKT and the affine pixel -> map transform; None for an image with neither."""
    if dataset.crs is None and dataset.transform.is_identity:
        return None
    crs_wkt = dataset.crs.to_wkt() if dataset.crs is not None else ""
    return GeoReference(crs_wkt, tuple(float(value) for value in tuple(dataset.transform)[:6]),
                        _iso_time({**dataset.tags(), **dataset.tags(ns="IMAGERY")}))


def _iso_time(tags: dict[str, str]) -> str | None:
    """The first time item of `TIME_TAGS` as ISO 8601; the TIFF form 'YYYY:MM:DD HH:MM:SS' is accepted,
    an unparsable value is no time."""
    for key in TIME_TAGS:
        if key in tags:
            value = re.sub(r"^(\d{4}):(\d{2}):(\d{2})[ T]", r"\1-\2-\3T", tags[key].strip())
            try:
                return datetime.fromisoformat(value).isoformat()
            except ValueError:
                return None
    return None


def _check_finite(raw: RawFrame) -> None:
    if raw.bands.dtype.kind == "f":
        for band, number in zip(raw.bands, raw.numbers):
            if not np.isfinite(band[raw.valid]).all():
                raise BadFrameError(f"{raw.where} band {number}: NaN or Inf outside NoData; expected finite values "
                                    f"(or a nodata value that marks them)")


def _white_point_range(raw: RawFrame, fmt: FrameFormat) -> tuple[np.ndarray, np.ndarray]:
    white = white_point(raw.bands.dtype, fmt, raw.where)
    return np.zeros(len(raw.bands)), np.full(len(raw.bands), white)


def stretch_range(raw: RawFrame, percentiles: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Per-band black and white, [B] each in raw units: the `percentiles` (low, high) of each band's
    valid pixels. BadFrameError when no pixel is valid or a band has no contrast between the two."""
    if raw.bands.dtype.kind not in "uif":
        raise BadFrameError(f"{raw.where}: {raw.bands.dtype} pixels; expected integer or float bands")
    if not raw.valid.any():
        raise BadFrameError(f"{raw.where}: every pixel is NoData; the stretch needs valid pixels in the first frame")
    black, white = np.percentile(raw.bands[:, raw.valid], percentiles, axis=1)  # float64 [2, B]
    for number, low, high in zip(raw.numbers, black, white):
        if high <= low:
            raise BadFrameError(f"{raw.where} band {number}: the {percentiles[0]:g}-{percentiles[1]:g} percentile "
                                f"stretch is flat (both {low:g}); expected contrast in the first frame, or give a "
                                f"white point")
    return black, white


def to_rgb(raw: RawFrame, black: np.ndarray, white: np.ndarray) -> np.ndarray:
    """Raw bands -> uint8 RGB [H, W, 3]: [black, white] (per band, [B]) -> [0, 255], rounded half up,
    clipped; NoData black; one band replicated as grey."""
    scale = (255.0 / (white - black)).astype(np.float32)[:, None, None]
    levels = (raw.bands.astype(np.float32) - black.astype(np.float32)[:, None, None]) * scale + np.float32(0.5)
    levels[:, ~raw.valid] = 0
    rgb = np.moveaxis(np.clip(levels, 0, 255).astype(np.uint8), 0, -1)
    return np.ascontiguousarray(np.repeat(rgb, 3, axis=2) if rgb.shape[2] == 1 else rgb)
