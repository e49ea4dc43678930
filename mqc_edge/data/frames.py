"""Frame sources: a folder of images, a video file, or numpy arrays, as uint8 RGB frames.

Satellite frames are often 16-bit or single-band, so conversion to 8-bit RGB is explicit and
configurable (`FrameFormat`), never a silent guess by an image library. Every error names the
frame (file or index) and what was expected.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import cv2
import numpy as np

from mqc_edge.errors import BadFrameError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


@dataclass(frozen=True)
class FrameFormat:
    """How raw pixel values become 8-bit RGB."""

    max_value_16bit: int = 65535
    """White point of 16-bit frames. 65535 maps the full range; 4095 or 16383 suit 12- or
    14-bit sensors stored in 16-bit containers (common for satellite video)."""

    check_size: bool = True
    """Reject a frame whose size differs from the first one: memory features are spatial, a
    size change mid-video would silently mis-align them."""


@dataclass(frozen=True)
class Frame:
    name: str
    """Stem of the input file, or the zero-padded index for videos and arrays."""
    rgb: np.ndarray
    """uint8 [H, W, 3], RGB order."""


def to_rgb_uint8(pixels: np.ndarray, where: str, fmt: FrameFormat = FrameFormat()) -> np.ndarray:
    """Normalise a [H, W], [H, W, 1], [H, W, 3] or [H, W, 4] array of uint8/uint16/float to RGB uint8.

    Channel order is taken as RGB(A); the 4th band (alpha, or near-infrared in RGBN imagery) is
    dropped. Floats are taken as [0, 1].
    """
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 3, 4) or min(pixels.shape[:2]) < 1:
        raise BadFrameError(f"{where}: expected [H, W] or [H, W, 1|3|4] pixels, got shape {pixels.shape}")
    if pixels.dtype == np.uint8:
        scaled = pixels
    elif pixels.dtype == np.uint16:
        scaled = np.clip(pixels.astype(np.float32) * (255.0 / fmt.max_value_16bit) + 0.5, 0, 255).astype(np.uint8)
    elif np.issubdtype(pixels.dtype, np.floating):
        if not np.isfinite(pixels).all():
            raise BadFrameError(f"{where}: frame holds NaN or Inf values")
        scaled = np.clip(pixels * 255.0 + 0.5, 0, 255).astype(np.uint8)
    else:
        raise BadFrameError(f"{where}: expected uint8, uint16 or float pixels, got {pixels.dtype}")
    if scaled.shape[2] == 1:
        scaled = np.repeat(scaled, 3, axis=2)
    return np.ascontiguousarray(scaled[:, :, :3])


def read_image(path: Path, fmt: FrameFormat = FrameFormat()) -> np.ndarray:
    """Read one image file (8/16-bit, 1/3/4 channels) as uint8 RGB."""
    data = np.fromfile(path, dtype=np.uint8) if Path(path).is_file() else None
    if data is None:
        raise BadFrameError(f"{path}: frame file missing")
    pixels = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if pixels is None:
        raise BadFrameError(f"{path}: unreadable or truncated image")
    if pixels.ndim == 3 and pixels.shape[2] == 3:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
    elif pixels.ndim == 3 and pixels.shape[2] == 4:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_BGRA2RGBA)
    return to_rgb_uint8(pixels, str(path), fmt)


def _folder_frames(folder: Path, fmt: FrameFormat) -> Iterator[Frame]:
    files = sorted(path for path in folder.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise BadFrameError(f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    for path in files:
        yield Frame(path.stem, read_image(path, fmt))


def _video_frames(path: Path, fmt: FrameFormat) -> Iterator[Frame]:
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise BadFrameError(f"{path}: cannot open video")
    try:
        index = 0
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            yield Frame(f"{index:05d}", to_rgb_uint8(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), f"{path} frame {index}", fmt))
            index += 1
        if index == 0:
            raise BadFrameError(f"{path}: video holds no decodable frame")
    finally:
        capture.release()


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
    """How many frames `source` holds, for a progress bar's ETA: image files in a folder, the
    container's count for a video (an estimate some codecs get wrong), None for arrays."""
    if not isinstance(source, (str, Path)) or not Path(source).exists():
        return None
    path = Path(source)
    if path.is_dir():
        return sum(1 for item in path.iterdir() if item.suffix.lower() in IMAGE_SUFFIXES)
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        return 1
    capture = cv2.VideoCapture(str(path))
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
    capture.release()
    return count if count > 0 else None


def iter_frames(source: Path | str | Iterable[np.ndarray], fmt: FrameFormat = FrameFormat()) -> Iterator[Frame]:
    """Stream frames lazily (constant memory for any video length) from a folder, file or arrays."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise BadFrameError(f"{path}: no such video file or frame folder")
        if path.is_dir():
            frames = _folder_frames(path, fmt)
        elif path.suffix.lower() in VIDEO_SUFFIXES:
            frames = _video_frames(path, fmt)
        elif path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            frames = iter([Frame(path.stem, read_image(path, fmt))])
        else:
            raise BadFrameError(f"{path}: not a frame folder, image or video ({', '.join(VIDEO_SUFFIXES)})")
        label = str(path)
    else:
        frames, label = _array_frames(source, fmt), "frames"
    return _checked_sizes(frames, label) if fmt.check_size else frames
