"""Georeferenced outputs of a run, for frames that carry a `GeoReference` (the `[geo]` extra).

Per object folder F (O for one object, O/obj<k> for several; `run.object_folders`):
```
F/masks_geo/<frame>.tif    single-band uint8 GeoTIFF, 0 background / 255 object (as masks/<frame>.png),
                           the frame's CRS and affine transform, deflate in strips of up to 2 MiB;
                           one per frame
F/track.geojson            FeatureCollection in the source CRS: one Polygon or MultiPolygon feature per
                           frame in which the object has pixels (frame, frame_index, time, score, area_m2)
F/track_summary.json       first/last frame of the track, the centroid path as a GeoJSON LineString in
                           the source CRS, path length and mean speed in metres (or null and the reason)
```
RFC 7946 GeoJSON assumes WGS84 longitude/latitude; track.geojson keeps the source CRS instead (no
resampling of the geometry), named in the 2008-style `crs` member (`urn:ogc:def:crs:EPSG::<code>`,
or the WKT when the CRS has no EPSG code) that GDAL/OGR and QGIS read, plus a `crs_wkt` member with
the full WKT. Polygons are traced on the pixel grid (`rasterio.features.shapes`, 4-connected) and
simplified (Douglas-Peucker, topology kept) within `SIMPLIFY_TOLERANCE_PX` pixels; coordinates are
rounded to 1/100 pixel. Areas and centroids are those of the mask's pixels, not of the simplified
polygon. Every file is written atomically; track.geojson streams into a hidden file renamed into
place at close, so only the centroids (name, time, x, y of each frame with the object) stay in memory.

rasterio and shapely are imported on first use: the base runtime imports this module without them.
"""

from __future__ import annotations

import json
import math
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

import numpy as np

from mqc_edge.atomic import new_temporary_beside, write_atomically, write_text_atomically
from mqc_edge.data.georef import GeoReference
from mqc_edge.errors import BadFrameError, ConfigError

SIMPLIFY_TOLERANCE_PX = 1.0
"""Largest distance, in pixels, between a simplified polygon and the traced pixel outline. One pixel
is below what the mask resolves (the decoder's logits come from a grid 4x coarser than the model's
input, 120x120 at 480 px, upsampled to the frame) and is the smallest tolerance that turns the
staircase of an oblique edge into one segment: on a 60x60 px aircraft at 20 degrees it keeps 38 of the 191
traced vertices and the area within 0.6 % (0.5 px keeps 173; measured, docs/outputs.md)."""

COORDINATE_STEP_PX = 0.01
"""Coordinates are rounded to a decimal step no larger than this many pixels."""

MASK_GEOTIFF_FOREGROUND = 255
"""Value of object pixels in masks_geo/*.tif (background 0), as in the PNG masks."""

GEOTIFF_STRIP_BYTES = 2 ** 21
"""Largest strip of a GeoTIFF mask: a 1080p mask is one strip (about 2.5 KB deflated, against 10.7 KB in
GDAL's default 8 KB strips, whose offsets and per-strip overheads dominate a nearly empty mask),
while a large scene is still read and written a slice at a time. Deflate is read by every TIFF reader;
ZSTD or 1-bit masks are smaller still (docs/outputs.md) but not."""

GEO_MASKS_DIR = "masks_geo"
TRACK_FILE = "track.geojson"
SUMMARY_FILE = "track_summary.json"


class TrackPoint(NamedTuple):
    """Where the object was in one frame in which it has pixels."""

    frame: str
    frame_index: int
    time: str | None
    """ISO 8601 acquisition time from the frame's georef, or None."""
    x: float
    """Map x of the mask's pixel centroid, in the source CRS."""
    y: float


def _geo_modules():
    """(rasterio, rasterio.features, shapely): the `[geo]` extra, or a one-line error saying how to get it."""
    try:
        import rasterio
        import rasterio.features
        import shapely
        import shapely.geometry
    except ImportError as error:
        raise ConfigError(f"georeferenced outputs need rasterio and shapely ({error}): "
                          f"pip install 'mqc-edge[geo]'") from error
    return rasterio, rasterio.features, shapely


def source_crs(georef: GeoReference):
    """The georef's CRS as a `rasterio.crs.CRS`, or None when the file gave a transform but no CRS."""
    rasterio, _, _ = _geo_modules()
    return rasterio.crs.CRS.from_wkt(georef.crs_wkt) if georef.crs_wkt else None


def metres_per_unit(crs) -> float | None:
    """Metres in one map unit of a projected CRS (1.0 for UTM, 0.3048 for international feet);
    None for a geographic CRS (degrees are not a length) or no CRS."""
    if crs is None or not crs.is_projected:
        return None
    return float(crs.linear_units_factor[1])


def pixel_size(georef: GeoReference) -> float:
    """The smaller side of one pixel, in map units (the transform may scale columns and rows differently)."""
    a, b, _, d, e, _ = georef.transform
    return min(math.hypot(a, d), math.hypot(b, e))


def pixel_area_m2(georef: GeoReference, crs) -> float | None:
    """Ground area of one pixel in m2 (|det| of the affine's linear part), None when `crs` is not projected."""
    factor = metres_per_unit(crs)
    a, b, _, d, e, _ = georef.transform
    return None if factor is None else abs(a * e - b * d) * factor * factor


def mask_centroid(mask: np.ndarray, georef: GeoReference) -> tuple[float, float] | None:
    """Map (x, y) of the mean of the mask's pixel centres; None for an empty bool [H, W] mask."""
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return None
    col, row = float(cols.mean()) + 0.5, float(rows.mean()) + 0.5
    a, b, c, d, e, f = georef.transform
    return a * col + b * row + c, d * col + e * row + f


def mask_geometry(mask: np.ndarray, georef: GeoReference, tolerance_px: float = SIMPLIFY_TOLERANCE_PX):
    """The bool [H, W] mask's pixels as a shapely Polygon (one 4-connected blob) or MultiPolygon
    (several), holes kept, in the georef's map coordinates, simplified within `tolerance_px` pixels
    and rounded to `COORDINATE_STEP_PX`; exterior rings counter-clockwise (RFC 7946's right-hand
    rule). None when the mask is empty."""
    rasterio, features, shapely = _geo_modules()
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return None
    transform = rasterio.Affine(*georef.transform)
    blobs = [shapely.geometry.shape(geometry)
             for geometry, _ in features.shapes(mask.astype(np.uint8), mask=mask, connectivity=4, transform=transform)]
    geometry = shapely.union_all(blobs).simplify(tolerance_px * pixel_size(georef), preserve_topology=True)
    decimals = coordinate_decimals(georef)
    geometry = shapely.transform(geometry, lambda xy: np.round(xy, decimals))
    return _counter_clockwise(geometry, shapely)


def _counter_clockwise(geometry, shapely):
    """Orient every part's exterior counter-clockwise and its holes clockwise."""
    orient = shapely.geometry.polygon.orient
    if geometry.geom_type == "Polygon":
        return orient(geometry, 1.0)
    return shapely.geometry.MultiPolygon([orient(part, 1.0) for part in geometry.geoms])


def coordinate_decimals(georef: GeoReference) -> int:
    """Decimal places that resolve `COORDINATE_STEP_PX` of a pixel (3 for 0.5 m pixels, 8 for 1e-5 degrees)."""
    return max(0, math.ceil(-math.log10(COORDINATE_STEP_PX * pixel_size(georef))))


def write_mask_geotiff(path: Path, mask: np.ndarray, georef: GeoReference) -> None:
    """Write a bool [H, W] mask as a single-band uint8 GeoTIFF (0 / `MASK_GEOTIFF_FOREGROUND`) with
    the georef's CRS (none when its WKT is empty) and transform, deflate-compressed in strips of up to
    `GEOTIFF_STRIP_BYTES`, atomically.
    Raises BadFrameError for a mask that is not 2-D."""
    rasterio, _, _ = _geo_modules()
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2 or 0 in mask.shape:
        raise BadFrameError(f"{path}: expected a [H, W] mask, got shape {mask.shape}")
    height, width = mask.shape
    profile = {"driver": "GTiff", "width": width, "height": height, "count": 1, "dtype": "uint8",
               "crs": source_crs(georef), "transform": rasterio.Affine(*georef.transform), "compress": "deflate",
               "blockysize": min(height, max(1, GEOTIFF_STRIP_BYTES // width))}

    def write(tmp: Path) -> None:
        with rasterio.open(tmp, "w", **profile) as dataset:
            dataset.write(mask.astype(np.uint8) * MASK_GEOTIFF_FOREGROUND, 1)

    write_atomically(path, write)


def crs_member(crs) -> dict | None:
    """The 2008 GeoJSON `crs` member naming `crs` (EPSG URN, else its WKT); None without a CRS."""
    if crs is None:
        return None
    code = crs.to_epsg()
    name = f"urn:ogc:def:crs:EPSG::{code}" if code is not None else crs.to_wkt()
    return {"type": "name", "properties": {"name": name}}


class GeoTrackWriter:
    """One object's georeferenced outputs over one video (module docstring: files, CRS, tolerance).

    All frames of a video must share the first frame's CRS (a FeatureCollection has one); the
    transform may change from frame to frame. `close` finishes track.geojson and writes the summary.
    """

    def __init__(self, out_dir: Path, first: GeoReference, tolerance_px: float = SIMPLIFY_TOLERANCE_PX) -> None:
        self.out_dir = Path(out_dir)
        self.crs_wkt = first.crs_wkt
        self.crs = source_crs(first)
        self.tolerance_px = tolerance_px
        (self.out_dir / GEO_MASKS_DIR).mkdir(parents=True, exist_ok=True)
        self._track_tmp = new_temporary_beside(self.out_dir / TRACK_FILE)
        self._track_file = open(self._track_tmp, "w", encoding="utf-8")
        header = {"type": "FeatureCollection", "crs": crs_member(self.crs), "crs_wkt": self.crs_wkt or None}
        self._track_file.write(json.dumps(header, separators=(",", ":"))[:-1] + ',"features":[')
        self._separator = "\n"
        self.frames_written = 0
        self.present: list[TrackPoint] = []

    def write_frame(self, name: str, frame_index: int, mask: np.ndarray, score: float | None,
                    georef: GeoReference) -> None:
        """Write frame `name`'s GeoTIFF mask and, when the bool [H, W] mask has pixels, its feature.
        Raises BadFrameError when the frame's CRS is not the first frame's."""
        if georef.crs_wkt != self.crs_wkt:
            raise BadFrameError(f"frame {name}: CRS differs from the video's first frame "
                                f"(one {TRACK_FILE} holds one CRS): {georef.crs_wkt[:60]!r}")
        write_mask_geotiff(self.out_dir / GEO_MASKS_DIR / f"{name}.tif", mask, georef)
        self.frames_written += 1
        geometry = mask_geometry(mask, georef, self.tolerance_px)
        if geometry is None:
            return
        _, _, shapely = _geo_modules()
        pixel_m2 = pixel_area_m2(georef, self.crs)
        area = None if pixel_m2 is None else round(int(np.count_nonzero(mask)) * pixel_m2, 3)
        properties = {"frame": name, "frame_index": frame_index, "time": georef.time, "score": score, "area_m2": area}
        feature = {"type": "Feature", "properties": properties, "geometry": shapely.geometry.mapping(geometry)}
        self._track_file.write(self._separator + json.dumps(feature, separators=(",", ":"), allow_nan=False))
        self._separator = ",\n"
        x, y = mask_centroid(mask, georef)
        decimals = coordinate_decimals(georef)
        self.present.append(TrackPoint(name, frame_index, georef.time, round(x, decimals), round(y, decimals)))

    def close(self) -> None:
        """Rename track.geojson into place and write track_summary.json; safe after a failure
        (the frames written so far are kept)."""
        self._track_file.write("\n]}\n")
        self._track_file.close()
        os.replace(self._track_tmp, self.out_dir / TRACK_FILE)
        summary = track_summary(self.present, self.crs, self.frames_written)
        text = json.dumps(summary, separators=(",", ":"), allow_nan=False)
        write_text_atomically(self.out_dir / SUMMARY_FILE, text + "\n")

    def __enter__(self) -> GeoTrackWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def track_summary(present: list[TrackPoint], crs, frames_written: int) -> dict:
    """Summary of one track from the frames in which the object has pixels: first/last frame, the
    centroid path (a LineString in the source CRS from 2 frames on, else null), its length in metres
    and the mean speed (path length / time from first to last frame) in m/s; length and speed are
    null, with `speed_unavailable` saying why, when the CRS or the times do not allow them."""
    factor = metres_per_unit(crs)
    points = [(point.x, point.y) for point in present]
    length_units = sum(math.dist(p, q) for p, q in zip(points, points[1:]))
    length_m = None if factor is None or len(points) < 2 else round(length_units * factor, 3)
    seconds, reason = _elapsed_seconds(present, crs)
    speed = round(length_m / seconds, 4) if reason is None else None
    return {
        "crs": crs_member(crs),
        "frames_written": frames_written,
        "frames_present": len(present),
        "first_frame": _frame_entry(present[0]) if present else None,
        "last_frame": _frame_entry(present[-1]) if present else None,
        "centroid_path": {"type": "LineString", "coordinates": points} if len(points) >= 2 else None,
        "path_length_m": length_m,
        "mean_speed_m_per_s": speed,
        "speed_unavailable": reason,
    }


def _frame_entry(point: TrackPoint) -> dict:
    return {"frame": point.frame, "frame_index": point.frame_index, "time": point.time}


def _elapsed_seconds(present: list[TrackPoint], crs) -> tuple[float, str | None]:
    """Seconds from the first to the last present frame, or (0, why a speed cannot be given)."""
    if len(present) < 2:
        return 0.0, "the object is present in fewer than two frames"
    if crs is None:
        return 0.0, "the frames carry no CRS"
    if metres_per_unit(crs) is None:
        return 0.0, "the CRS is not projected (map units are not lengths)"
    first, last = present[0], present[-1]
    times = [first.time, last.time]
    if None in times:
        missing = first.frame if first.time is None else last.frame
        return 0.0, f"frame {missing} carries no acquisition time"
    try:
        start, end = (_utc(datetime.fromisoformat(time)) for time in times)
    except ValueError:
        return 0.0, f"acquisition times {times} are not ISO 8601"
    seconds = (end - start).total_seconds()
    if seconds <= 0:
        return 0.0, f"time does not advance from frame {first.frame} to frame {last.frame}"
    return seconds, None


def _utc(moment: datetime) -> datetime:
    """A time without a zone is taken as UTC, so that zoned and plain times can be subtracted."""
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment
