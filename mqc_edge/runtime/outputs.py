"""Everything `run` writes, frame by frame, so that a failure at frame k leaves frames < k on disk.

```
O/masks/<frame>.png        0/255 binary mask at frame size
O/logits/<frame>.npy       float32 mask logits at frame size (--save-logits), to compare runs
O/results.jsonl            one JSON object a frame: scores, gates fired, timings
O/masks_coco_rle.json      COCO run-length encodings of all masks (written at close)
O/overlay.mp4              frames with the mask blended in (optional)
```
Every file is complete or absent: images and arrays are renamed into place, and each
results line is one append of a whole line, flushed before the next frame.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from mqc_edge.atomic import write_atomically, write_text_atomically


def coco_rle(mask: np.ndarray) -> dict:
    """COCO uncompressed RLE of a bool [H, W] mask: run lengths in column-major order,
    starting with a (possibly empty) run of zeros, as pycocotools expects."""
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], change, [flat.size]))
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0] + counts
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def decode_coco_rle(rle: dict) -> np.ndarray:
    """Inverse of `coco_rle` (used by tests and by tools comparing runs)."""
    height, width = rle["size"]
    values = np.zeros(height * width, dtype=bool)
    position, value = 0, False
    for count in rle["counts"]:
        values[position : position + count] = value
        position += count
        value = not value
    return values.reshape((height, width), order="F")


class RunWriter:
    """Writes one run's outputs incrementally; `close` finishes the summary files."""

    def __init__(self, out_dir: Path, save_logits: bool = False, overlay_fps: float | None = None) -> None:
        self.out_dir = Path(out_dir)
        self.save_logits = save_logits
        self.overlay_fps = overlay_fps
        (self.out_dir / "masks").mkdir(parents=True, exist_ok=True)
        if save_logits:
            (self.out_dir / "logits").mkdir(parents=True, exist_ok=True)
        self._results_fd = os.open(self.out_dir / "results.jsonl", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        self._rles: dict[str, dict] = {}
        self._overlay: cv2.VideoWriter | None = None

    def write_frame(self, name: str, mask: np.ndarray, record: dict, logits: np.ndarray | None = None,
                    rgb: np.ndarray | None = None) -> None:
        """Persist one frame: mask PNG, optional logits, one results line, overlay frame."""
        write_atomically(self.out_dir / "masks" / f"{name}.png", Image.fromarray(mask.astype(np.uint8) * 255).save)
        if self.save_logits and logits is not None:
            write_atomically(self.out_dir / "logits" / f"{name}.npy", lambda tmp: np.save(tmp, logits.astype(np.float32)))
        line = json.dumps({"frame": name, **record}, sort_keys=True) + "\n"
        os.write(self._results_fd, line.encode("utf-8"))
        self._rles[name] = coco_rle(mask)
        if self.overlay_fps and rgb is not None:
            self._write_overlay(rgb, mask)

    def _write_overlay(self, rgb: np.ndarray, mask: np.ndarray) -> None:
        if self._overlay is None:
            height, width = mask.shape
            self._overlay = cv2.VideoWriter(str(self.out_dir / "overlay.mp4"), cv2.VideoWriter_fourcc(*"mp4v"),
                                            self.overlay_fps, (width, height))
        tinted = rgb.copy()
        tinted[mask] = (0.5 * tinted[mask] + 0.5 * np.array([255, 40, 40])).astype(np.uint8)
        self._overlay.write(cv2.cvtColor(tinted, cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        """Finish summary files; safe to call after a failure (keeps what was computed)."""
        os.close(self._results_fd)
        write_text_atomically(self.out_dir / "masks_coco_rle.json", json.dumps(self._rles))
        if self._overlay is not None:
            self._overlay.release()

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
