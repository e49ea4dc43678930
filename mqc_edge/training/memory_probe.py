"""Does the memory carry the target? Per-frame validation J&F of a checkpoint under three probes.

    python -m mqc_edge.training.memory_probe CKPT [--clips 10] [--frames 8] [--starts box text]

For the first object of each validation clip (`VALIDATION_SEED`, clean), from its frame-0 box
(SAM 2 mode) and its expression (MQC mode), through `ClipUnroller` (the training unroll, equal
to the runtime's Tracker): J&F per frame with
- `normal`: what inference sees;
- `zero-memory`: every memory the memory encoder writes replaced by zeros (the memory's content
  gone, its slots still valid);
- `no-content`: tracked frames' image content at 0 (`tracked_content`), so only memory can place
  the target.
A model whose memory carries the target loses J&F under `zero-memory` and keeps some under
`no-content`; the shipped chain's checkpoints do neither (docs/model_card.md, "Memory curriculum").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from mqc_edge.model.checkpoint import load_checkpoint
from mqc_edge.model.mqc_sam import MQCSAM
from mqc_edge.training.clips import VALIDATION_SEED, ClipSampling, TextFeatureCache, sample_clip
from mqc_edge.training.trainer import clip_jf
from mqc_edge.training.unroll import ClipUnroller, Start

PROBES = ("normal", "zero-memory", "no-content")


def probe_unroller(model: MQCSAM, probe: str) -> ClipUnroller:
    """A `ClipUnroller` of `model` under `probe` (one of `PROBES`)."""
    unroller = ClipUnroller(model)
    if probe == "zero-memory":
        encode = unroller.stages["memory_encoder"]
        unroller.stages["memory_encoder"] = lambda *inputs: torch.zeros_like(encode(*inputs))
    elif probe == "no-content":
        unroller.tracked_content = 0.0
    return unroller


def per_frame_jf(model: MQCSAM, probe: str, start: str, clips: int, frames: int) -> np.ndarray:
    """Mean J&F per frame index `[frames]` over the first object of `clips` validation clips."""
    texts = TextFeatureCache(model.text_encoder)
    unroller = probe_unroller(model, probe)
    sampling = ClipSampling(frames=frames, degraded_share=0.0, image_size=model.config.image_size)
    total = np.zeros(frames)
    with torch.no_grad():
        for index in range(clips):
            clip = sample_clip(VALIDATION_SEED, index, sampling)
            obj = clip.objects[0]
            if start == "text":
                hidden, mask = texts(obj.text)
                prompt = Start("text", text_hidden=hidden, text_mask=mask)
            else:
                prompt = Start("box", box=obj.box)
            outputs = unroller(torch.from_numpy(clip.images), prompt)
            total += [clip_jf(outputs[t:t + 1], obj.masks[t:t + 1]) for t in range(frames)]
    return total / clips


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--clips", type=int, default=10)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--starts", nargs="+", choices=("box", "text"), default=["box", "text"])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, _ = load_checkpoint(args.checkpoint)
    model.eval()
    for start in args.starts:
        for probe in PROBES:
            jf = per_frame_jf(model, probe, start, args.clips, args.frames)
            print(f"{start:4s} {probe:12s} clip {jf.mean():.3f} frame0 {jf[0]:.3f} tracked {jf[1:].mean():.3f}  "
                  f"per frame {np.round(jf, 3).tolist()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
