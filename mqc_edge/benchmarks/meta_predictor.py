"""Meta's `SAM2VideoPredictor` as a benchmark contestant: what users would run otherwise.

Driven exactly as its README shows (init_state on a JPEG folder, boxes on frame 0,
propagate_in_video, fp16/bf16 under torch.autocast, each frame's masks thresholded and read to
the host), with the same checkpoint, image size, device and precision as our contestants. Its
per-frame time is the wall time between consecutive frames yielded by propagate_in_video; the
host read of the masks makes it wait for the GPU, as our runtime's per-frame read does.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Sequence

import torch
from sam2.build_sam import build_sam2_video_predictor

from mqc_edge.benchmarks.contestant import ContestantRun
from mqc_edge.benchmarks.memory import resident_bytes
from mqc_edge.model.torch_backend import precision_context
from mqc_edge.model.sam2_build import SAM21_CONFIGS, hydra_overrides


def build_meta_predictor(checkpoint: Path, variant: str, image_size: int, device: str = "cpu",
                         vos_optimized: bool = False):
    """Meta's predictor with its own defaults (hole filling is skipped without sam2._C, with a warning);
    `vos_optimized`: its torch.compile'd variant (compiled lazily, on the first frames it runs)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_sam2_video_predictor(
            SAM21_CONFIGS[variant], str(checkpoint), device=device,
            hydra_overrides_extra=hydra_overrides(variant, image_size), vos_optimized=vos_optimized,
        )


def run_meta_predictor(predictor, frames_dir: Path, boxes: Sequence[Sequence[float]],
                       precision: str = "fp32") -> ContestantRun:
    """One pass over the JPEG folder with one box per object on frame 0, at `precision`
    (torch_backend.PRECISIONS) on the predictor's device."""
    run = ContestantRun(name="meta-sam2-predictor", first_mask_ms=0.0)
    started = time.perf_counter()
    with (warnings.catch_warnings(), torch.inference_mode(),
          precision_context(torch.device(predictor.device), precision)):
        warnings.simplefilter("ignore")
        state = predictor.init_state(str(frames_dir))
        for obj_id, box in enumerate(boxes, start=1):
            predictor.add_new_points_or_box(state, frame_idx=0, obj_id=obj_id, box=list(box))
        run.first_mask_ms = (time.perf_counter() - started) * 1e3
        last = None
        for frame_idx, _, mask_logits in predictor.propagate_in_video(state):
            (mask_logits > 0.0).cpu()
            now = time.perf_counter()
            if frame_idx > 0:
                run.frame_ms.append((now - last) * 1e3)
                run.resident_bytes.append(resident_bytes())
            last = now
    return run


def meta_checkpoint(weights: Path, out: Path) -> Path:
    """Meta's `{"model": state_dict}` file from an export's weights: a SAM 2.1 state dict as is,
    an MQC-SAM checkpoint's `sam.` tensors with the prefix removed (the rest is ours)."""
    from safetensors.torch import load_file

    tensors = load_file(str(weights))
    if any(key.startswith("sam.") for key in tensors):
        tensors = {key.removeprefix("sam."): value for key, value in tensors.items() if key.startswith("sam.")}
    torch.save({"model": tensors}, out)
    return out
