"""A TIFF's frames as raw pixels, read with tifffile: every full-resolution page of the IFD chain is
a frame, its bands are channels whatever its photometric tag and planar configuration says.

GDAL writes every multi-band non-byte image as grey (MINISBLACK) bands and means band k as channel
k; band-interleaved (planar) and BigTIFF files are common in remote sensing. Reduced-resolution
copies (GeoTIFF overviews) and transparency masks are not frames. The sample type is left as it is:
`frames.FrameFormat` states how each becomes 8-bit.
"""

from __future__ import annotations

import struct
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import tifffile
from tifffile import COMPRESSION, PHOTOMETRIC

from mqc_edge.errors import BadFrameError

JPEG_COMPRESSIONS = (COMPRESSION.JPEG, COMPRESSION.OJPEG)
"""tifffile decodes JPEG-compressed YCbCr pages to RGB; uncompressed YCbCr it returns as stored."""


def tiff_frame_count(path: Path) -> int:
    """How many frames the TIFF at `path` holds: its pages less overviews and masks."""
    with _opened(path) as tif:
        return len(_frame_page_indices(tif, path))


def tiff_frame_pages(path: Path) -> Iterator[np.ndarray]:
    """Each frame page's pixels, [H, W] or [H, W, bands] with 3 or 4 bands in band order, in the
    page's own sample type; one page decoded at a time, the file open until the last is read.
    Errors name the page by its frame number: `<path> page <n>`."""
    with _opened(path) as tif:
        for number, index in enumerate(_frame_page_indices(tif, path)):
            yield _page_bands(tif.pages[index], f"{path} page {number}")


@contextmanager
def _opened(path: Path) -> Iterator[tifffile.TiffFile]:
    try:
        tif = tifffile.TiffFile(path)
    except (ValueError, struct.error, OSError) as error:  # tifffile's TiffFileError is a ValueError
        raise BadFrameError(f"{path}: unreadable or truncated TIFF ({error})") from None
    with tif:
        yield tif


def _frame_page_indices(tif: tifffile.TiffFile, path: Path) -> list[int]:
    """Positions in the IFD chain of the frame pages: NewSubfileType bit 0 (reduced-resolution copy)
    or bit 2 (transparency mask) marks a page that is not one; SubIFDs (tifffile's pyramids) are
    never in the chain. Every page, not tifffile's first series: a stack written one page per
    `TiffWriter.write` call is one series per page."""
    _check_chain_ends(tif, path)
    try:
        indices = [page.index for page in tif.pages if not (page.is_reduced or page.is_mask)]
    except (ValueError, struct.error, OSError) as error:
        raise BadFrameError(f"{path}: unreadable or truncated TIFF ({error})") from None
    if not indices:
        raise BadFrameError(f"{path}: no full-resolution image page; expected at least one besides "
                            f"overviews and masks")
    return indices


def _check_chain_ends(tif: tifffile.TiffFile, path: Path) -> None:
    """BadFrameError unless the last IFD links to none (offset 0). tifffile stops at a link past the
    end of the file or at an unreadable directory with a logged error, not an exception: a cut
    stack would lose its last frames without a word."""
    handle = tif.filehandle
    handle.seek(tif.pages.next_page_offset)
    link = handle.read(tif.tiff.offsetsize)
    if len(link) < tif.tiff.offsetsize or struct.unpack(tif.tiff.offsetformat, link)[0] != 0:
        raise BadFrameError(f"{path}: unreadable or truncated TIFF (its image directories end early, "
                            f"after {len(tif.pages)} of them)")


def _page_bands(page: tifffile.TiffPage, where: str) -> np.ndarray:
    """Decode one page: bands last whatever the planar configuration, palette indices as their
    colours (uint8 RGB); refuse by name what has no RGB reading."""
    _check_readable_as_rgb(page, where)
    try:
        pixels = page.asarray()
    except Exception as error:  # tifffile and imagecodecs raise many types on damaged data
        raise BadFrameError(f"{where}: unreadable or truncated image data ({error})") from None
    if page.photometric == PHOTOMETRIC.PALETTE:
        colours = np.rint(page.colormap.T / 257.0).astype(np.uint8)  # [2**bits, 3]; TIFF colours are 16-bit
        return colours[pixels]
    return np.moveaxis(pixels, page.axes.index("S"), -1) if "S" in page.axes else pixels


def _check_readable_as_rgb(page: tifffile.TiffPage, where: str) -> None:
    """Refuse, by name, colour models whose samples are not R, G, B (or grey) and band counts
    without an RGB meaning."""
    photometric = page.photometric
    if not (photometric in (PHOTOMETRIC.MINISBLACK, PHOTOMETRIC.RGB, PHOTOMETRIC.PALETTE)
            or (photometric == PHOTOMETRIC.YCBCR and page.compression in JPEG_COMPRESSIONS)):
        name = getattr(photometric, "name", photometric)
        raise BadFrameError(f"{where}: photometric {name} pixels; expected MINISBLACK (grey or bands), RGB, "
                            f"PALETTE or JPEG-compressed YCBCR")
    bands = page.samplesperpixel
    if bands not in (1, 3, 4):
        raise BadFrameError(f"{where}: {bands} bands; expected 1 (grey), 3 (RGB) or 4 (RGB and one dropped); "
                            f"write the 3 bands to show first (e.g. gdal_translate -b 3 -b 2 -b 1)")
