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

`identity_iou` asks the same of several objects: every prompted object of a clip tracked from
its own box (its own memory, the same frames), the tracked frames' masks scored against the
object itself and against the clip's other prompted objects. A model whose memory tells objects
apart scores higher on its own object; one that segments whatever looks like a target scores
both alike.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from mqc_edge.model.checkpoint import load_checkpoint
from mqc_edge.model.mqc_sam import MQCSAM
from mqc_edge.runtime.config import TrackerConfig
from mqc_edge.training.clips import VALIDATION_SEED, ClipSampling, TextFeatureCache, sample_clip
from mqc_edge.data.metrics import region_similarity
from mqc_edge.training.trainer import clip_jf, upsampled
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


def identity_iou(model: MQCSAM, clips: int, frames: int) -> tuple[float, float, int]:
    """Tracked frames' mask IoU with the object's own ground truth and with another prompted object's
    of the same clip, averaged over ordered object pairs of the first `clips` validation clips that
    prompt several objects (box starts, SAM 2 mode) -> (own, other, pairs)."""
    unroller = ClipUnroller(model, TrackerConfig(mode="sam2"))
    sampling = ClipSampling(frames=frames, degraded_share=0.0, image_size=model.config.image_size,
                            start_shares=(0.0, 1.0, 0.0), max_objects=4)
    own, other = [], []
    with torch.no_grad():
        for index in range(clips):
            clip = sample_clip(VALIDATION_SEED, index, sampling)
            if len(clip.objects) < 2:
                continue
            outputs = unroller.objects(torch.from_numpy(clip.images), [Start("box", box=obj.box) for obj in clip.objects])
            for a, tracked in enumerate(outputs):
                masks = [(upsampled(out.mask_lowres[0], clip.images.shape[-1])[0] > 0).numpy() for out in tracked[1:]]
                for b, obj in enumerate(clip.objects):
                    scores = [region_similarity(mask, truth) for mask, truth in zip(masks, obj.masks[1:])]
                    (own if a == b else other).append(float(np.mean(scores)))
    pairs = len(other)
    return float(np.mean(own)) if own else float("nan"), float(np.mean(other)) if other else float("nan"), pairs


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
    own, other, pairs = identity_iou(model, args.clips, args.frames)
    print(f"box  identity     tracked IoU with its own object {own:.3f}, with another prompted object {other:.3f} "
          f"({pairs} ordered pairs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
