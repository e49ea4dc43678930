"""The RS-RVOS dataset layout: the Refer-YouTube-VOS / MeViS convention RVOS users know.

```
D/JPEGImages/<video>/<frame>.jpg       RGB frames
D/Annotations/<video>/<frame>.png      palette PNG, pixel value = object id (0 = background)
D/meta_expressions.json                {"videos": {"<video>": {"frames": [...],
                                         "expressions": {"<exp_id>": {"exp": "...", "obj_id": "<id>"}}}}}
                                       optional per expression: "category" (the target's class, as
                                       Refer-YouTube-VOS's meta.json gives per object): the
                                       evaluation then reports J&F per category too
D/splits/<split>.txt                   one video name per line
```
Everything is validated on load so that a broken dataset fails at once with the file named,
not deep inside an evaluation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from mqc_edge.atomic import write_atomically, write_text_atomically
from mqc_edge.errors import DatasetError

META_FILE = "meta_expressions.json"
FRAME_DIR = "JPEGImages"
ANNOTATION_DIR = "Annotations"
SPLIT_DIR = "splits"
FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class Expression:
    exp_id: str
    text: str
    obj_id: int
    category: str | None = None  # the target's class ("ship"), when the dataset names it


@dataclass(frozen=True)
class VideoRecord:
    name: str
    frames: tuple[str, ...]
    expressions: dict[str, Expression] = field(default_factory=dict)


def object_palette() -> list[int]:
    """The 256-colour palette of DAVIS / PASCAL VOC annotations (id k -> a distinct colour).

    Bits of the id are spread over the high bits of R, G and B, so low ids get saturated,
    easily told-apart colours and tools that show palette PNGs display familiar colours.
    """
    palette = []
    for index in range(256):
        red = green = blue = 0
        value = index
        for shift in range(7, -1, -1):
            red |= (value & 1) << shift
            green |= ((value >> 1) & 1) << shift
            blue |= ((value >> 2) & 1) << shift
            value >>= 3
        palette.extend((red, green, blue))
    return palette


def _parse_video(name: str, entry: object, meta_path: Path) -> VideoRecord:
    if not isinstance(entry, dict) or not isinstance(entry.get("frames"), list):
        raise DatasetError(f"{meta_path}: video {name!r} needs a 'frames' list")
    frames = tuple(str(frame) for frame in entry["frames"])
    if not frames:
        raise DatasetError(f"{meta_path}: video {name!r} has no frames")
    expressions = {}
    for exp_id, exp in (entry.get("expressions") or {}).items():
        if not isinstance(exp, dict) or not isinstance(exp.get("exp"), str) or "obj_id" not in exp:
            raise DatasetError(f"{meta_path}: video {name!r} expression {exp_id!r} needs 'exp' and 'obj_id'")
        try:
            obj_id = int(exp["obj_id"])
        except (TypeError, ValueError):
            raise DatasetError(
                f"{meta_path}: video {name!r} expression {exp_id!r}: obj_id must be an integer, got {exp['obj_id']!r}"
            ) from None
        category = exp.get("category")
        if category is not None and not (isinstance(category, str) and category):
            raise DatasetError(
                f"{meta_path}: video {name!r} expression {exp_id!r}: category must be a non-empty string, got {category!r}"
            )
        expressions[str(exp_id)] = Expression(str(exp_id), exp["exp"], obj_id, category)
    return VideoRecord(name, frames, expressions)


def _read_meta(root: Path) -> dict[str, VideoRecord]:
    meta_path = root / META_FILE
    if not meta_path.is_file():
        raise DatasetError(f"{meta_path}: missing (is {root} an RS-RVOS dataset root?)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DatasetError(f"{meta_path}: not valid JSON ({error})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("videos"), dict):
        raise DatasetError(f"{meta_path}: expected an object with a 'videos' mapping")
    return {name: _parse_video(name, entry, meta_path) for name, entry in meta["videos"].items()}


def _read_split(root: Path, split: str, videos: dict[str, VideoRecord]) -> list[str]:
    split_path = root / SPLIT_DIR / f"{split}.txt"
    if not split_path.is_file():
        raise DatasetError(f"{split_path}: split list missing")
    names = [line.strip() for line in split_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for line_number, name in enumerate(names, start=1):
        if name not in videos:
            raise DatasetError(f"{split_path}:{line_number}: video {name!r} is not in {META_FILE}")
    return names


class RVOSDataset:
    """A validated dataset on disk; frames and annotations are read lazily."""

    def __init__(self, root: Path, videos: dict[str, VideoRecord]) -> None:
        self.root = Path(root)
        self.videos = videos

    @classmethod
    def load(cls, root: Path, split: str | None = None) -> RVOSDataset:
        """Read and validate `root`; with `split`, keep only the videos of splits/<split>.txt."""
        root = Path(root)
        videos = _read_meta(root)
        if split is not None:
            videos = {name: videos[name] for name in _read_split(root, split, videos)}
        dataset = cls(root, videos)
        for video in videos.values():
            for frame in video.frames:
                dataset.frame_path(video.name, frame)
        return dataset

    def splits(self) -> list[str]:
        """Names of the split lists present under splits/."""
        return sorted(path.stem for path in (self.root / SPLIT_DIR).glob("*.txt"))

    def frame_path(self, video: str, frame: str) -> Path:
        folder = self.root / FRAME_DIR / video
        for suffix in FRAME_SUFFIXES:
            candidate = folder / f"{frame}{suffix}"
            if candidate.is_file():
                return candidate
        raise DatasetError(f"{folder / (frame + '.jpg')}: frame listed in {META_FILE} but missing")

    def annotation_path(self, video: str, frame: str) -> Path:
        return self.root / ANNOTATION_DIR / video / f"{frame}.png"

    def read_frame(self, video: str, frame: str) -> np.ndarray:
        """The frame as uint8 RGB [H, W, 3]."""
        from mqc_edge.data.frames import read_image

        return read_image(self.frame_path(video, frame))

    def read_annotation(self, video: str, frame: str) -> np.ndarray:
        """Object ids [H, W] (uint8, 0 = background) from the palette PNG."""
        path = self.annotation_path(video, frame)
        if not path.is_file():
            raise DatasetError(f"{path}: annotation missing")
        try:
            with Image.open(path) as image:
                if image.mode not in ("P", "L"):
                    raise DatasetError(f"{path}: annotation must be a palette or grey PNG of object ids, got mode {image.mode}")
                return np.array(image)
        except OSError as error:
            raise DatasetError(f"{path}: unreadable annotation ({error})") from None

    def object_mask(self, video: str, frame: str, obj_id: int) -> np.ndarray:
        """bool [H, W]: where the annotation holds `obj_id`."""
        return self.read_annotation(video, frame) == obj_id


class DatasetWriter:
    """Writes a dataset in the RS-RVOS layout; `close` merges into an existing meta file."""

    def __init__(self, root: Path, jpeg_quality: int = 95) -> None:
        self.root = Path(root)
        self.jpeg_quality = jpeg_quality
        self._frames: dict[str, list[str]] = {}
        self._expressions: dict[str, dict[str, dict[str, str]]] = {}

    def write_frame(self, video: str, frame: str, rgb: np.ndarray, ids: np.ndarray | None = None) -> None:
        """Write the JPEG frame and, if given, its object-id annotation as a palette PNG."""
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise DatasetError(f"{video}/{frame}: frame must be uint8 [H, W, 3], got {rgb.dtype} {rgb.shape}")
        image_path = self.root / FRAME_DIR / video / f"{frame}.jpg"
        write_atomically(image_path, lambda tmp: Image.fromarray(rgb).save(tmp, quality=self.jpeg_quality))
        if ids is not None:
            if ids.shape != rgb.shape[:2] or ids.max(initial=0) > 255:
                raise DatasetError(
                    f"{video}/{frame}: annotation must be [H, W] ids < 256 matching the frame {rgb.shape[:2]}, got {ids.shape}"
                )
            annotation = Image.fromarray(ids.astype(np.uint8), mode="P")
            annotation.putpalette(object_palette())
            write_atomically(self.root / ANNOTATION_DIR / video / f"{frame}.png", annotation.save)
        self._frames.setdefault(video, []).append(frame)
        self._expressions.setdefault(video, {})

    def add_expression(self, video: str, exp_id: str, text: str, obj_id: int, category: str | None = None) -> None:
        entry = {"exp": text, "obj_id": str(int(obj_id))}
        if category is not None:
            entry["category"] = category
        self._expressions.setdefault(video, {})[str(exp_id)] = entry

    def close(self, split: str | None = None) -> RVOSDataset:
        """Write meta_expressions.json (merged with what is there) and the split list."""
        meta_path = self.root / META_FILE
        videos = json.loads(meta_path.read_text(encoding="utf-8"))["videos"] if meta_path.is_file() else {}
        for video, frames in self._frames.items():
            videos[video] = {"frames": frames, "expressions": self._expressions.get(video, {})}
        write_text_atomically(meta_path, json.dumps({"videos": videos}, indent=1, sort_keys=True))
        if split is not None:
            split_path = self.root / SPLIT_DIR / f"{split}.txt"
            listed = split_path.read_text(encoding="utf-8").split() if split_path.is_file() else []
            listed += [video for video in self._frames if video not in listed]
            write_text_atomically(split_path, "".join(f"{name}\n" for name in listed))
        return RVOSDataset.load(self.root)
