"""Where a frame lies on the Earth: what a georeferenced source gives with its pixels.

Plain data, no GDAL: frames read through rasterio (`data/geotiff.py`, the `[geo]` extra) carry
one, and the georeferenced writers turn pixel masks into map geometry with it. Frames from
images, videos and plain TIFFs carry none.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GeoReference:
    """The georeferencing of one frame, as GDAL states it."""

    crs_wkt: str
    """Coordinate reference system as WKT ("" when the file has a transform but no CRS)."""
    transform: tuple[float, float, float, float, float, float]
    """Affine pixel -> map transform (a, b, c, d, e, f) in rasterio's / affine's order:
    x = a * col + b * row + c, y = d * col + e * row + f, for pixel corners (col, row)."""
    time: str | None = None
    """Acquisition time as ISO 8601 when the file states it (TIFF DateTime or GDAL metadata), else None."""
