"""Turn a training run's checkpoint into the shipped default weights (fp16 storage).

    python -m mqc_edge.training.ship RUN/model.safetensors mqc_edge/model/weights/mqc_sam_default.safetensors

fp16 storage halves the file (the package carries it); every figure of docs/model_card.md is
measured on the weights read back from this file, so the rounding is inside the measurement.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from mqc_edge.model.checkpoint import load_checkpoint, save_checkpoint


def ship(checkpoint: Path, out: Path) -> int:
    """Write `checkpoint`'s weights to `out` in fp16; returns the file size in bytes."""
    model, _ = load_checkpoint(Path(checkpoint))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(model, Path(out), storage_dtype=torch.float16)
    return Path(out).stat().st_size


if __name__ == "__main__":
    size = ship(Path(sys.argv[1]), Path(sys.argv[2]))
    print(f"wrote {sys.argv[2]}: {size / 1e6:.1f} MB")
