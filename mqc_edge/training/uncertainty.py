"""Train the CroBIM-U uncertainty head (model/uncertainty.py) on a frozen MQC-SAM's own mask errors.

    python -m mqc_edge.training.uncertainty --out RUN --steps 4000 [--init CKPT] [--clips 400]

1. The frozen model (default: the shipped default weights) runs training clips of the synthetic
   generator (`sample_clip` with `TRAIN_SEED`) through `ClipUnroller` under `torch.no_grad`:
   box starts (SAM 2 mode) and, for a share of the clips, text starts (MQC mode), every frame of
   every prompted object. Each frame's fpn0, chosen low-res logits and error target are cached.
2. Target: per low-res pixel, the share of its 4x4 input pixels where the thresholded, upsampled
   mask differs from the ground truth (a soft label in [0, 1]; the runtime compares at frame size).
3. Only the head trains: BCE with a positive-class weight w (errors are a few % of the pixels),
   AdamW. Afterwards log(w) is subtracted from the output bias: training with weight w shifts the
   optimum's logit by exactly +log(w), so the shipped u is again a calibrated error probability.

RUN/ gets `model.safetensors` (fp32: the init weights + the head), `model_fp16.safetensors`
(`training/ship.py`, the form the package ships) and `uncertainty_train.json` (losses, w, sizes).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mqc_edge.atomic import write_text_atomically
from mqc_edge.default_model import DEFAULT_WEIGHTS
from mqc_edge.errors import ConfigError
from mqc_edge.model.checkpoint import load_tensors_into, read_checkpoint, save_checkpoint
from mqc_edge.model.mqc_sam import MQCSAM
from mqc_edge.runtime.config import TrackerConfig
from mqc_edge.training.clips import TRAIN_SEED, ClipObject, ClipSampling, TextFeatureCache, sample_clip
from mqc_edge.training.ship import ship
from mqc_edge.training.unroll import ClipUnroller, Start

MAX_SHIPPED_BYTES = 25_000_000
"""The package's weight file limit (docs/model_card.md: the shipped fp16 file stays <= 25 MB)."""


@dataclass(frozen=True)
class UncertaintyTraining:
    """Settings of one head training; defaults are ours, sized for ~15 min on 2 CPU cores."""

    steps: int = 4000  # AdamW steps over the cached frames
    clips: int = 400  # training clips run through the frozen model (x up to 3 objects x 4 frames)
    batch: int = 32  # cached object-frames per step
    learning_rate: float = 3e-3  # AdamW; a 7 k-parameter conv head converges in a few thousand steps
    weight_decay: float = 1e-4
    text_share: float = 0.3  # clips started from text (MQC mode); the rest from a box (SAM 2 mode)
    max_pos_weight: float = 20.0  # cap of w = negatives / positives: rare errors, not a 100x overshoot
    seed: int = TRAIN_SEED


@dataclass
class HeadData:
    """Cached inputs and targets of the head: one row per (object, frame)."""

    fpn0: torch.Tensor  # float16 [F, 32, S/4, S/4], one row per distinct frame
    frame_of: torch.Tensor  # int64 [N]: row of `fpn0` each sample reads
    logits: torch.Tensor  # float32 [N, 1, S/4, S/4] the chosen low-res mask logits
    target: torch.Tensor  # float32 [N, 1, S/4, S/4] share of wrong input pixels per low-res pixel

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.fpn0[self.frame_of[index]].float(), self.logits[index], self.target[index]


def error_target(mask_lowres: torch.Tensor, truth: np.ndarray) -> torch.Tensor:
    """`[1, 1, h, w]` logits and bool `[S, S]` ground truth -> `[1, 1, h, w]` share of the S/h x S/h
    input pixels where the upsampled (bilinear, as SAM 2) mask > 0 differs from the truth."""
    size = truth.shape[-1]
    predicted = F.interpolate(mask_lowres, size=(size, size), mode="bilinear", align_corners=False) > 0
    wrong = (predicted[0, 0] != torch.from_numpy(truth)).float()[None, None]
    return F.avg_pool2d(wrong, size // mask_lowres.shape[-1])


def collect(model: MQCSAM, settings: UncertaintyTraining, log=print) -> HeadData:
    """Run `settings.clips` training clips (text or box starts, `text_share`) through the frozen
    model; cache the head's inputs and targets."""
    unroller = ClipUnroller(model, TrackerConfig(mode="mqc"))
    texts = TextFeatureCache(model.text_encoder)
    sampling = ClipSampling(image_size=model.config.image_size,
                            start_shares=(settings.text_share, 1.0 - settings.text_share, 0.0))
    fpn0s, frame_of, logits, targets = [], [], [], []
    begin = time.monotonic()
    with torch.no_grad():
        for index in range(settings.clips):
            clip = sample_clip(settings.seed, index, sampling)
            starts = [_start(clip.start, obj, texts) for obj in clip.objects]
            images = torch.from_numpy(clip.images)
            fpn0 = unroller.stages["image_encoder"](images)[0]
            first_row = sum(len(f) for f in fpn0s)
            fpn0s.append(fpn0.half())
            for obj, outputs in zip(clip.objects, unroller.objects(images, starts)):
                for t, out in enumerate(outputs):
                    frame_of.append(first_row + t)
                    logits.append(out.mask_lowres.float())
                    targets.append(error_target(out.mask_lowres.float(), obj.masks[t]))
            if (index + 1) % 50 == 0:
                log(f"collected {index + 1}/{settings.clips} clips, {len(logits)} object-frames, "
                    f"{time.monotonic() - begin:.0f} s")
    return HeadData(torch.cat(fpn0s), torch.tensor(frame_of), torch.cat(logits), torch.cat(targets))


def _start(kind: str, obj: ClipObject, texts: TextFeatureCache) -> Start:
    if kind == "text":
        hidden, mask = texts(obj.text)
        return Start("text", text_hidden=hidden, text_mask=mask)
    return Start("box", box=obj.box, point=obj.point)


def positive_weight(data: HeadData, cap: float) -> float:
    """w = (1 - e) / e for the mean error share e, capped at `cap` (and at least 1)."""
    share = float(data.target.mean())
    return float(min(max((1.0 - share) / max(share, 1e-6), 1.0), cap))


def train_head(model: MQCSAM, data: HeadData, settings: UncertaintyTraining, log=print) -> dict:
    """AdamW on the head alone (every other parameter frozen), then fold -log(w) into its output
    bias (module docstring). Returns the run's record: w, error share, mean loss of the first and
    the last tenth of the steps."""
    head = model.uncertainty
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for parameter in head.parameters():
        parameter.requires_grad_(True)
    weight = positive_weight(data, settings.max_pos_weight)
    optimizer = torch.optim.AdamW(head.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    generator = torch.Generator().manual_seed(settings.seed)
    losses = []
    head.train()
    for step in range(settings.steps):
        for group in optimizer.param_groups:
            group["lr"] = settings.learning_rate * 0.5 * (1 + math.cos(math.pi * step / settings.steps))
        index = torch.randint(len(data.logits), (settings.batch,), generator=generator)
        fpn0, logits, target = data.batch(index)
        loss = F.binary_cross_entropy_with_logits(head.logits(fpn0, logits), target,
                                                  pos_weight=torch.tensor(weight))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        if (step + 1) % 500 == 0:
            log(f"step {step + 1}/{settings.steps}: loss {np.mean(losses[-500:]):.4f}")
    head.eval()
    with torch.no_grad():
        head.net[-1].bias -= math.log(weight)
    tenth = max(1, settings.steps // 10)
    return {"pos_weight": weight, "error_share": float(data.target.mean()), "samples": len(data.logits),
            "loss_first_10pct": float(np.mean(losses[:tenth])), "loss_last_10pct": float(np.mean(losses[-tenth:]))}


def model_with_head(init: Path) -> tuple[MQCSAM, str]:
    """`init`'s model with a fresh uncertainty head (its own one, if it has one, is replaced)."""
    tensors, config, source = read_checkpoint(init)
    if config is None:
        raise ConfigError(f"--init {init}: an mqc-edge checkpoint is needed (it carries the model config)")
    model = MQCSAM(dataclasses.replace(config, uncertainty_head=True))
    kept = {key: value for key, value in tensors.items() if not key.startswith("uncertainty.")}
    report = load_tensors_into(model, kept, init, source)
    return model.eval(), str(report)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mqc_edge.training.uncertainty", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="run directory")
    parser.add_argument("--steps", type=int, default=UncertaintyTraining.steps)
    parser.add_argument("--clips", type=int, default=UncertaintyTraining.clips)
    parser.add_argument("--init", type=Path, default=DEFAULT_WEIGHTS, help="frozen model (default: shipped)")
    parser.add_argument("--ship", type=Path, default=None, help="also write the fp16 file here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    settings = UncertaintyTraining(steps=args.steps, clips=args.clips)
    torch.manual_seed(settings.seed)  # the head's initial weights
    model, report = model_with_head(args.init)
    print(report)
    data = collect(model, settings)
    record = {"settings": dataclasses.asdict(settings), "init": str(args.init), **train_head(model, data, settings)}
    args.out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(model, args.out / "model.safetensors")
    shipped = args.ship or args.out / "model_fp16.safetensors"
    record["shipped"], record["shipped_bytes"] = str(shipped), ship(args.out / "model.safetensors", shipped)
    write_text_atomically(args.out / "uncertainty_train.json", json.dumps(record, indent=1) + "\n")
    print(json.dumps(record, indent=1))
    if record["shipped_bytes"] > MAX_SHIPPED_BYTES:
        raise ConfigError(f"{shipped}: {record['shipped_bytes']} bytes, over the {MAX_SHIPPED_BYTES} byte limit")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
