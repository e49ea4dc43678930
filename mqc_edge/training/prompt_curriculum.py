"""`mqc-edge train-prompts`: the prompt path (prompt encoder, mask decoder, text projection, fusion)
trained on a frozen image encoder, with the image content faded in after the prompt's position.

Why (docs/model_card.md, "Prompt curriculum"): trained end to end, the compact model learned to
segment every target-looking object and ignore its prompt. Measured on cached encoder outputs: a
fresh decoder given the real features from step 0 stays at "all objects" (IoU with the prompted
object 0.20, with another object 0.19, after 6,000 steps of 8 box prompts each); given no content
(features zeroed) it learns to place the box within 1,500 steps (IoU with another object 0.01).
So phase 1 teaches position alone, phase 2 fades the content in (feature scale 0 -> 1), and phase 3
trains text starts (projection + fusion, the decoder at a lower rate) on that decoder.

The image encoder runs once per training image (`encode_images`); its outputs are kept in fp16
(0.55 MB an image at 256 px), so a step is a decoder call for all objects of one image. Steps pick
images with a seeded generator: the same config gives the same weights.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from mqc_edge.atomic import write_text_atomically
from mqc_edge.model.checkpoint import load_checkpoint, save_checkpoint
from mqc_edge.model.mqc_sam import MQCSAM
from mqc_edge.runtime.prompts import point_prompt
from mqc_edge.training.clips import TRAIN_SEED, VALIDATION_SEED, ClipSampling, TextFeatureCache, sample_clip
from mqc_edge.training.losses import frame_loss
from mqc_edge.training.unroll import ClipUnroller

PROMPT_PARTS = ("sam.sam_prompt_encoder", "sam.sam_mask_decoder")
TEXT_PARTS = ("text_encoder.projection", "fusion.")


@dataclass(frozen=True)
class CurriculumConfig:
    """The three phases; defaults are the run behind the shipped weights (docs/model_card.md)."""

    images: int = 6000  # training images encoded once (train seed)
    text_images: int = 3000  # text-referable training images for phase 3
    validation_images: int = 60  # validation seed: IoU with the prompted object and with another one
    position_steps: int = 3000  # phase 1: content features zeroed, targets = the objects' filled boxes
    fade_steps: int = 2000  # phase 2: content scaled 0 -> 1 over these steps, targets = masks ...
    full_steps: int = 3000  # ... then at full scale
    text_steps: int = 6000  # phase 3: text starts
    learning_rate: float = 5e-4  # phase 1; phases 2 and 3 use `refine_learning_rate`
    refine_learning_rate: float = 3e-4
    text_decoder_learning_rate: float = 5e-5  # the decoder while the text path learns to use it
    warmup_steps: int = 300  # per phase, then cosine decay to 5 %
    focal_weight: float = 1.0  # SAM 2's 20 empties the masks of 0.1-1.5 %-of-frame targets from a fresh decoder
    max_objects: int = 8  # box/point prompts per image, batched in one decoder call
    point_share: float = 0.4  # phase 1-2 steps prompted by one positive click instead of the box
    box_jitter: float = 0.1
    degraded_share: float = 0.3
    seed: int = TRAIN_SEED
    sampling_seed: int = 1  # the generator that picks images, prompt kinds, jitter and clicks
    extra: dict = field(default_factory=dict)


@dataclass
class EncodedImage:
    """One frame-0 image as the decoder sees it, and its objects."""

    conditioned: torch.Tensor  # fp16 [1, 256, S/16, S/16] features + no-memory embedding
    fpn0: torch.Tensor  # fp16 [1, C0, S/4, S/4]
    fpn1: torch.Tensor  # fp16 [1, C1, S/8, S/8]
    masks: np.ndarray  # packed bits of bool [K, S, S] (np.packbits on the last axis)
    texts: tuple[str | None, ...]  # each object's expression (None: not referable)

    def unpacked(self, size: int) -> torch.Tensor:
        """Masks as float {0, 1} `[K, S, S]`."""
        return torch.from_numpy(np.unpackbits(self.masks, axis=-1)[..., :size].astype(np.float32))


def encode_images(unroller: ClipUnroller, seed: int, count: int, sampling: ClipSampling,
                  progress: bool = True) -> list[EncodedImage]:
    """Images 0..count-1 of the stream `seed` (one-frame clips) through the frozen image encoder."""
    stages, encoded = unroller.stages, []
    for index in tqdm(range(count), desc=f"encode {seed}", disable=not progress):
        clip = sample_clip(seed, index, sampling)
        with torch.no_grad():
            fpn0, fpn1, feat = stages["image_encoder"](torch.from_numpy(clip.images))
            conditioned = stages["no_memory"](feat)
        masks = np.packbits(np.stack([obj.masks[0] for obj in clip.objects]), axis=-1)
        encoded.append(EncodedImage(conditioned.half(), fpn0.half(), fpn1.half(), masks,
                                    tuple(obj.text for obj in clip.objects)))
    return encoded


def feature_scale(config: CurriculumConfig, step: int) -> float:
    """Content scale of phase 1-2 step `step`: 0 in phase 1, then linear to 1 over `fade_steps`."""
    if step < config.position_steps:
        return 0.0
    return min(1.0, (step - config.position_steps + 1) / max(config.fade_steps, 1))


def phase_learning_rate(peak: float, step: int, steps: int, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 5 % of `peak` at the phase's last step."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(steps - warmup, 1)
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def filled_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Each mask's bounding box filled: `[K, S, S]` -> `[K, S, S]` (phase 1's position-only targets)."""
    boxes = torch.zeros_like(masks)
    for index, mask in enumerate(masks):
        ys, xs = torch.nonzero(mask, as_tuple=True)
        boxes[index, ys.min():ys.max() + 1, xs.min():xs.max() + 1] = 1
    return boxes


class PromptCurriculum:
    """Owns the model, the encoded images and the three phases of one run directory."""

    def __init__(self, model: MQCSAM, config: CurriculumConfig, run_dir: Path, progress: bool = True) -> None:
        self.model, self.config, self.run_dir, self.progress = model, config, Path(run_dir), progress
        self.unroller = ClipUnroller(model)
        self.geometry = self.unroller.geometry
        self.size = self.geometry.image_size
        self.texts = TextFeatureCache(model.text_encoder)
        self.rng = np.random.default_rng(config.sampling_seed)
        self.run_dir.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ data
    def _sampling(self, text: bool) -> ClipSampling:
        shares = (1.0, 0.0, 0.0) if text else (0.0, 1.0, 0.0)
        return ClipSampling(frames=1, image_size=self.size, start_shares=shares, box_jitter=self.config.box_jitter,
                            max_objects=4 if text else self.config.max_objects,
                            degraded_share=self.config.degraded_share)

    def encode(self, text: bool, validation: bool = False) -> list[EncodedImage]:
        config = self.config
        count = config.validation_images if validation else (config.text_images if text else config.images)
        return encode_images(self.unroller, VALIDATION_SEED if validation else config.seed, count,
                             self._sampling(text), self.progress)

    # ------------------------------------------------------------------ decoder calls
    def _decode(self, image: EncodedImage, sparse: torch.Tensor, dense: torch.Tensor, multimask: bool,
                scale: float = 1.0):
        """The mask decoder stage on `sparse.shape[0]` prompts of one image, content scaled by `scale`."""
        count = sparse.shape[0]
        conditioned = scale * image.conditioned.float().expand(count, -1, -1, -1)
        return self.unroller.stages["mask_decoder"](conditioned, scale * image.fpn0.float(), scale * image.fpn1.float(),
                                                     sparse, dense, torch.tensor([multimask]))

    def _geometric_prompts(self, masks: torch.Tensor, kind: str, jitter: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Box (jittered) or one positive click per object -> the prompt encoder's sparse, dense."""
        coords, labels = [], []
        for mask in masks.numpy() > 0:
            ys, xs = np.nonzero(mask)
            if kind == "box":
                box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)
                side = np.array([box[2] - box[0], box[3] - box[1]] * 2, np.float32)
                box = np.clip(box + self.rng.uniform(-jitter, jitter, 4).astype(np.float32) * side, 0, self.size)
                prompt = point_prompt(box, None, None, (self.size, self.size), self.geometry)
            else:
                pick = int(self.rng.integers(len(xs)))
                click = np.array([[xs[pick] + 0.5, ys[pick] + 0.5]], np.float32)
                prompt = point_prompt(None, click, np.ones(1, np.int32), (self.size, self.size), self.geometry)
            coords.append(prompt.coords)
            labels.append(prompt.labels)
        size = self.size
        sparse, dense, _ = self.unroller.stages["prompt_encoder"](
            torch.from_numpy(np.concatenate(coords)), torch.from_numpy(np.concatenate(labels)),
            torch.zeros(1, 1, size, size), torch.tensor(False))
        return sparse, dense

    def _text_prompt(self, image: EncodedImage, text: str) -> tuple[torch.Tensor, torch.Tensor]:
        hidden, mask = self.texts(text)
        projected = self.model.text_encoder.project(hidden, mask)
        return self.unroller.stages["prompt_fusion"](image.conditioned.float(), projected.tokens,
                                                     projected.attention_mask)

    def _loss(self, hypotheses: torch.Tensor, ious: torch.Tensor, scores: torch.Tensor,
              targets: torch.Tensor) -> torch.Tensor:
        """Mean over objects of SAM 2's frame loss: hypotheses `[K, H, h, w]` low-res, targets `[K, S, S]`."""
        upsampled = F.interpolate(hypotheses, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return torch.stack([frame_loss(upsampled[i], ious[i], scores[i], targets[i], self.config.focal_weight).total
                            for i in range(len(targets))]).mean()

    # ------------------------------------------------------------------ phases
    def geometric_step(self, image: EncodedImage, step: int) -> torch.Tensor:
        """Phases 1-2: every object of `image` by box (single-mask token) or click (multimask)."""
        masks = image.unpacked(self.size)
        kind = "point" if self.rng.random() < self.config.point_share else "box"
        sparse, dense = self._geometric_prompts(masks, kind, self.config.box_jitter)
        scale = feature_scale(self.config, step)
        hypotheses, ious, _, _, _, scores = self._decode(image, sparse, dense, kind == "point", scale)
        chosen = slice(1, None) if kind == "point" else slice(0, 1)
        targets = filled_boxes(masks) if step < self.config.position_steps else masks
        return self._loss(hypotheses[:, chosen], ious[:, chosen], scores, targets)

    def text_step(self, image: EncodedImage) -> torch.Tensor:
        """Phase 3: every referable object of `image` from its expression (no points: multimask)."""
        masks = image.unpacked(self.size)
        losses = []
        for index, text in enumerate(image.texts):
            sparse, dense = self._text_prompt(image, text)
            hypotheses, ious, _, _, _, scores = self._decode(image, sparse, dense, True)
            losses.append(self._loss(hypotheses[:, 1:], ious[:, 1:], scores, masks[index:index + 1]))
        return torch.stack(losses).mean()

    def train_phase(self, name: str, images: list[EncodedImage], steps: int, groups: list[dict],
                    step_fn) -> None:
        """`steps` AdamW steps of `step_fn(image, step)` on random images; each group's "peak" LR is
        warmed up and decayed; one log line per 100 steps."""
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        for group in groups:
            for parameter in group["params"]:
                parameter.requires_grad_(True)
        optimizer = torch.optim.AdamW(groups, weight_decay=0.01)
        trained = [p for group in groups for p in group["params"]]
        window: list[float] = []
        for step in tqdm(range(steps), desc=name, disable=not self.progress):
            for group in optimizer.param_groups:
                group["lr"] = phase_learning_rate(group["peak"], step, steps, self.config.warmup_steps)
            loss = step_fn(images[int(self.rng.integers(len(images)))], step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trained, 1.0)
            optimizer.step()
            window.append(float(loss.detach()))
            if (step + 1) % 100 == 0 or step + 1 == steps:
                self._log({"phase": name, "step": step + 1, "loss": float(np.mean(window))})
                window.clear()

    def _log(self, record: dict) -> None:
        with open(self.run_dir / "log.jsonl", "a") as log:
            log.write(json.dumps(record) + "\n")

    def parameters(self, prefixes: tuple[str, ...]) -> list[torch.nn.Parameter]:
        return [p for name, p in self.model.named_parameters() if name.startswith(prefixes)]

    def run(self) -> dict:
        """All three phases; returns the validation IoUs and writes RUN/model.safetensors."""
        config = self.config
        images = self.encode(text=False)
        geometric_steps = config.position_steps + config.fade_steps + config.full_steps
        prompt = self.parameters(PROMPT_PARTS)
        self.train_phase("position", images, config.position_steps,
                         [{"params": prompt, "peak": config.learning_rate}], self.geometric_step)
        self.train_phase("content", images, geometric_steps - config.position_steps,
                         [{"params": prompt, "peak": config.refine_learning_rate}],
                         lambda image, step: self.geometric_step(image, step + config.position_steps))
        del images
        text_images = [image for image in self.encode(text=True) if all(image.texts)]
        self.train_phase("text", text_images, config.text_steps,
                         [{"params": self.parameters(TEXT_PARTS), "peak": config.refine_learning_rate},
                          {"params": self.parameters(("sam.sam_mask_decoder",)), "peak": config.text_decoder_learning_rate}],
                         lambda image, step: self.text_step(image))
        report = self.validate()
        save_checkpoint(self.model, self.run_dir / "model.safetensors")
        write_text_atomically(self.run_dir / "validation.json", json.dumps(report, indent=2))
        return report

    @torch.no_grad()
    def validate(self) -> dict:
        """Mean IoU of the chosen mask with the prompted object and with another object of the same
        image (a prompt-blind model scores both alike), by box and by text, on validation images;
        None where no image had two objects."""
        self.model.eval()
        scores: dict[str, list[float]] = {"box_own": [], "box_other": [], "text_own": [], "text_other": []}
        for text in (False, True):
            for image in self.encode(text, validation=True):
                masks = image.unpacked(self.size) > 0
                chosen = self._chosen_masks(image, masks, text)
                for index, mask in enumerate(chosen):
                    kind = "text" if text else "box"
                    scores[f"{kind}_own"].append(_iou(mask, masks[index]))
                    if len(masks) > 1:
                        scores[f"{kind}_other"].append(_iou(mask, masks[(index + 1) % len(masks)]))
        self.model.train()
        return {name: float(np.mean(values)) if values else None for name, values in scores.items()}

    def _chosen_masks(self, image: EncodedImage, masks: torch.Tensor, text: bool) -> list[torch.Tensor]:
        if text:
            outputs = [self._decode(image, *self._text_prompt(image, t), True)[2] for t in image.texts]
            lowres = torch.cat(outputs)
        else:
            lowres = self._decode(image, *self._geometric_prompts(masks.float(), "box", self.config.box_jitter), False)[2]
        upsampled = F.interpolate(lowres, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return list(upsampled[:, 0] > 0)


def _iou(prediction: torch.Tensor, truth: torch.Tensor) -> float:
    union = (prediction | truth).sum()
    return float((prediction & truth).sum() / union) if union else 1.0


def train_prompts(init: Path, run_dir: Path, config: CurriculumConfig = CurriculumConfig(),
                  progress: bool = True) -> dict:
    """The curriculum on the checkpoint `init` (its image encoder and memory path kept as they are;
    the prompt encoder and mask decoder start fresh). Returns the validation report."""
    model, _ = load_checkpoint(Path(init))
    torch.manual_seed(0)
    fresh = MQCSAM(model.config).state_dict()
    model.load_state_dict({name: value for name, value in fresh.items() if name.startswith(PROMPT_PARTS)},
                          strict=False)
    return PromptCurriculum(model, config, run_dir, progress).run()
