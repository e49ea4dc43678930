"""Everything `run` writes, frame by frame, so that a failure at frame k leaves frames < k on disk.

```
O/masks/<frame>.png        0/255 binary mask at frame size
O/logits/<frame>.npy       float32 mask logits at frame size (--save-logits), to compare runs
O/uncertainty/<frame>.png  8-bit CroBIM-U uncertainty at frame size, u in [0, 1] as round(255 u) (--save-uncertainty)
O/results.jsonl            one JSON object a frame: scores, gates fired, timings
O/masks_coco_rle.json      COCO run-length encodings of all masks (streamed, renamed into place at close)
O/overlay.mp4              frames with the masks blended in, one colour per object (optional)
```
Every file is complete or absent: images, arrays and the overlay video are renamed into place,
and each results line is one append of a whole line, flushed before the next frame.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from PIL import Image

from mqc_edge.atomic import new_temporary_beside, write_atomically


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


def uncertainty_png(uncertainty: np.ndarray) -> np.ndarray:
    """float [H, W] u in [0, 1] -> uint8 round(255 u), clipped (the --save-uncertainty PNG)."""
    return np.round(np.clip(uncertainty, 0.0, 1.0) * 255.0).astype(np.uint8)


class RunWriter:
    """Writes one run's outputs incrementally; `close` finishes the summary files."""

    def __init__(self, out_dir: Path, save_logits: bool = False, save_uncertainty: bool = False) -> None:
        self.out_dir = Path(out_dir)
        self.save_logits = save_logits
        self.save_uncertainty = save_uncertainty
        (self.out_dir / "masks").mkdir(parents=True, exist_ok=True)
        for folder, wanted in (("logits", save_logits), ("uncertainty", save_uncertainty)):
            if wanted:
                (self.out_dir / folder).mkdir(parents=True, exist_ok=True)
        self._results_fd = os.open(self.out_dir / "results.jsonl", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o666)
        # COCO RLEs stream into a hidden file renamed at close: nothing per frame stays in memory.
        self._rle_final = self.out_dir / "masks_coco_rle.json"
        self._rle_file = open(self.out_dir / f".{self._rle_final.name}.partial", "w", encoding="utf-8")
        self._rle_file.write("{")
        self._rle_separator = ""

    def write_frame(self, name: str, mask: np.ndarray, record: dict, logits: np.ndarray | None = None,
                    uncertainty: np.ndarray | None = None) -> None:
        """Persist one frame: mask PNG, optional logits and uncertainty PNG (a model without the
        uncertainty head gives None: nothing written), one results line."""
        write_atomically(self.out_dir / "masks" / f"{name}.png", Image.fromarray(mask.astype(np.uint8) * 255).save)
        if self.save_logits and logits is not None:
            write_atomically(self.out_dir / "logits" / f"{name}.npy", lambda tmp: np.save(tmp, logits.astype(np.float32)))
        if self.save_uncertainty and uncertainty is not None:
            image = Image.fromarray(uncertainty_png(uncertainty))
            write_atomically(self.out_dir / "uncertainty" / f"{name}.png", image.save)
        line = json.dumps({"frame": name, **record}, sort_keys=True, allow_nan=False) + "\n"
        os.write(self._results_fd, line.encode("utf-8"))
        self._rle_file.write(f"{self._rle_separator}{json.dumps(name)}: {json.dumps(coco_rle(mask))}")
        self._rle_separator = ", "

    def close(self) -> None:
        """Finish summary files; safe to call after a failure (keeps what was computed)."""
        os.close(self._results_fd)
        self._rle_file.write("}")
        self._rle_file.close()
        os.replace(self._rle_file.name, self._rle_final)

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


OBJECT_COLOURS = ((255, 40, 40), (40, 200, 255), (255, 210, 0), (60, 220, 60), (230, 60, 230), (255, 140, 0))
"""RGB tint of object k in the overlay (cycled): saturated hues that stand out on satellite ground."""
UNCERTAIN_COLOUR = (255, 255, 255)
"""Overlay tint where an object's uncertainty exceeds `UNCERTAIN_THRESHOLD`: white, unlike every object hue."""
UNCERTAIN_THRESHOLD = 0.5
"""u > 0.5: the head finds the pixel more likely wrong than right."""


class OverlayVideo:
    """The overlay video of a run: each object's mask blended in its own colour. One file for all
    objects (they share the frames); written under a hidden name and renamed into place at close."""

    def __init__(self, path: Path, fps: float) -> None:
        self.path = Path(path)
        self.fps = fps
        self._tmp = new_temporary_beside(self.path)
        self._writer: cv2.VideoWriter | None = None

    def write(self, rgb: np.ndarray, masks: Sequence[np.ndarray],
              uncertainties: Sequence[np.ndarray | None] = ()) -> None:
        """Append one frame: uint8 RGB [H, W, 3], one bool [H, W] mask per object and, optionally,
        one float [H, W] uncertainty (or None) per object, tinted white where above 0.5."""
        if self._writer is None:
            height, width = rgb.shape[:2]
            self._writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (width, height))
        tinted = rgb.astype(np.float32)
        for number, mask in enumerate(masks):
            tinted[mask] = 0.5 * tinted[mask] + 0.5 * np.array(OBJECT_COLOURS[number % len(OBJECT_COLOURS)], np.float32)
        for uncertainty in uncertainties:
            if uncertainty is not None:
                doubtful = uncertainty > UNCERTAIN_THRESHOLD
                tinted[doubtful] = 0.4 * tinted[doubtful] + 0.6 * np.array(UNCERTAIN_COLOUR, np.float32)
        self._writer.write(cv2.cvtColor(tinted.astype(np.uint8), cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        """Finish the file (also after a failure: the frames written so far are kept)."""
        if self._writer is None:
            self._tmp.unlink(missing_ok=True)
            return
        self._writer.release()
        os.replace(self._tmp, self.path)

    def __enter__(self) -> OverlayVideo:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
