"""`mqc-edge train`: MQC-SAM from scratch on synthetic satellite clips, resumable step for step.

Each step is one clip (`training/clips.py`) with up to `max_objects` objects prompted on it, each
through `ClipUnroller` with SAM 2's losses (`training/losses.py`) plus the S_robust scorer's,
averaged over the objects, then AdamW with linear warm-up and cosine
decay. With `batch_clips` B (the GPU path) a step is B clips: the image encoder runs once on all
their frames, the box- and click-started objects of all B clips run SAM 2 mode as one batch each
(`training/batched_unroll.py`), the text-started ones run `ClipUnroller` one by one, and the loss
is the mean over every object of the step. Step i's clips and random state depend only on
(seed, i), and the optimizer state is checkpointed with the weights, so N steps in two runs give
the weights N steps in one give.

RUN/ holds `state.pt` (weights, optimizer, history; read with `weights_only=True`),
`model.safetensors` (the mqc-edge checkpoint every other command takes), `log.jsonl` (one line
per step) and `training.png` (loss and validation J&F).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import multiprocessing
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from mqc_edge.atomic import write_atomically
from mqc_edge.data.metrics import boundary_f, region_similarity
from mqc_edge.errors import CheckpointError, ConfigError
from mqc_edge.model.checkpoint import TEXT_MODEL_PREFIX, save_checkpoint
from mqc_edge.model.mqc_sam import MQCSAM, MQCSAMConfig
from mqc_edge.runtime.config import TrackerConfig
from mqc_edge.runtime.prompts import point_prompt
from mqc_edge.training.clips import (
    TRAIN_SEED,
    VALIDATION_SEED,
    Clip,
    ClipObject,
    ClipSampling,
    TextFeatureCache,
    sample_clip,
)
from mqc_edge.training.batched_unroll import BatchedSAM2Unroller, BatchedStart, stack_clip_features
from mqc_edge.training.box_tokens import box_token_loss
from mqc_edge.training.losses import FOCAL_WEIGHT, batch_frame_loss, frame_loss
from mqc_edge.training.memory_read import MemoryReadHead, memory_read_loss
from mqc_edge.training.unroll import ClipUnroller, FrameOutput, Start

STATE_FILE, MODEL_FILE, LOG_FILE, PLOT_FILE = "state.pt", "model.safetensors", "log.jsonl", "training.png"


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings; defaults are ours, sized for 2 CPU cores (docs/model_card.md)."""

    steps: int = 6000  # clip steps; about 1.1 s each at 256 px on 2 cores
    learning_rate: float = 3e-4  # AdamW peak, one clip per step (docs/model_card.md: the runs tried)
    warmup_steps: int = 200  # linear warm-up from 0
    final_lr_ratio: float = 0.05  # cosine decay ends at this share of the peak
    weight_decay: float = 0.05  # on matrices only; norms, biases and embeddings are not decayed
    grad_clip: float = 1.0  # global L2 norm
    robustness_weight: float = 1.0  # BCE of S_robust against the chosen mask's IoU
    seed: int = TRAIN_SEED
    sampling: ClipSampling = field(default_factory=ClipSampling)
    checkpoint_minutes: float = 5.0  # state.pt and model.safetensors at least this often
    validate_every: int = 250  # steps between validation J&F measurements (0: never)
    validation_clips: int = 6  # clips of `validation_frames` frames, text and box starts
    validation_frames: int = 8
    clip_pool: int = 0  # 0: a new clip every step; N: cycle over the first N clips (overfitting checks)
    init_from: str | None = None  # "path sha256" of the checkpoint step 0 started from (None: random init)
    reinitialized: tuple[str, ...] = ()  # parameter-name prefixes that kept their fresh init over `init_from`
    trainable: tuple[str, ...] = ()  # parameter-name prefixes that train (empty: all); the rest stays frozen
    focal_weight: float = FOCAL_WEIGHT  # SAM 2's 20; 1 for a decoder that is still learning (docs/model_card.md)
    balanced_weight: float = 0.0  # class-balanced BCE on the masks (losses.balanced_bce); 0: SAM 2's loss
    memory_locality: float = 0.0  # |c| added to memory attention's cross-attention q/k biases at step 0
    # (training/memory_start.py); 0: none
    memory_mask_gain: float = 1.0  # the memory encoder's response to the mask multiplied at step 0; 1: none
    batch_clips: int = 0  # 0: one clip per step (CPU); B: B clips per step, SAM 2 starts batched (GPU)
    memory_read_weight: float = 0.0  # auxiliary loss on memory attention's output (training/memory_read.py); 0: off
    box_token_weight: float = 0.0  # auxiliary loss pulling text starts' fused sparse tokens toward the target box's
    # prompt tokens (training/box_tokens.py); 0: off
    text_states: str | None = None  # precomputed language-model states (training/text_states.py) in place of
    # the language model, which is then never loaded (a GPU machine without the MiniLM weights)
    text_start_multimask: bool = True  # text starts decode best of three (loss on the best); False: the
    # single-mask token, as `TrackerConfig.text_start_multimask` runs them (docs/model_card.md)
    memory_curriculum: tuple[int, int] = (0, 0)  # (hold, fade) steps: tracked frames' image content held at 0,
    # then faded in to 1 (`tracked_content`); (0, 0): content always whole (docs/model_card.md, "Memory curriculum")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        """A saved config; fields added since it was written take their defaults."""
        values = json.loads(text)
        values["reinitialized"] = tuple(values.get("reinitialized", ()))
        values["trainable"] = tuple(values.get("trainable", ()))
        values["memory_curriculum"] = tuple(values.get("memory_curriculum", (0, 0)))
        sampling = ClipSampling(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.pop("sampling").items()})
        return cls(**values, sampling=sampling)


def learning_rate(config: TrainConfig, step: int) -> float:
    """Linear warm-up to the peak, then cosine decay to `final_lr_ratio` of it at the last step."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(config.steps - config.warmup_steps, 1)
    floor = config.final_lr_ratio
    return config.learning_rate * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def tracked_content(config: TrainConfig, step: int) -> float:
    """Share of the current frame's image content that memory attention and the decoder see on
    tracked frames at `step`: 0 for the curriculum's first `hold` steps, then linear to 1 over
    `fade` steps, 1 afterwards. With no content the target's place can only come from memory, so
    the memory path must carry it (the prompt curriculum's finding one stage later)."""
    hold, fade = config.memory_curriculum
    if step < hold:
        return 0.0
    return min(1.0, (step - hold + 1) / fade) if fade > 0 else 1.0


@dataclass
class TrainingState:
    """What a checkpoint carries besides the model: where the run is and what it measured."""

    step: int = 0  # steps done
    losses: list[list[float]] = field(default_factory=list)  # [step, loss] of every step
    validation: list[dict] = field(default_factory=list)  # {"step", "text_jf", "box_jf"}


class Trainer:
    """Owns model, optimizer and state of one run directory."""

    def __init__(self, run_dir: Path, config: TrainConfig, model_config: MQCSAMConfig, device: str = "cpu") -> None:
        self.run_dir = Path(run_dir)
        self.config = config
        self.device = torch.device(device)
        torch.manual_seed(config.seed)  # the fresh init (model, memory-read head) is the run's, not the process's
        self.model = MQCSAM(model_config, text_model=config.text_states is None).to(self.device)
        self.memory_head = MemoryReadHead(self.model.sam.hidden_dim).to(self.device) if config.memory_read_weight else None
        self.optimizer = _adamw(self.model, config, self.memory_head)
        tracking = TrackerConfig(mode="mqc", text_start_multimask=config.text_start_multimask)
        self.unroller = ClipUnroller(self.model, tracking)
        self.batched = BatchedSAM2Unroller(self.unroller)
        self.texts = _text_source(self.model, config)
        self.state = TrainingState()
        self.run_dir.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ persistence
    def start_from(self, checkpoint: Path, reinitialize: tuple[str, ...] = ()) -> str:
        """Step 0 from `checkpoint`'s weights (an mqc-edge checkpoint, or Meta's SAM 2.1 .pt for the
        SAM 2 part); MQC parts it lacks keep their random init, and so do the parameters whose names
        start with a prefix in `reinitialize` (a head restarted on a trained encoder). Returns the
        load report. Raises ConfigError if the run has started or a prefix names no parameter."""
        from mqc_edge.model.checkpoint import load_tensors_into, read_checkpoint
        from mqc_edge.runtime.manifest import sha256_of

        if self.state.step:
            raise ConfigError(f"--init {checkpoint}: the run in {self.run_dir} has started; it cannot change its start")
        fresh = {name: value.clone() for name, value in self.model.state_dict().items()
                 if name.startswith(tuple(reinitialize))}
        for prefix in reinitialize:
            if not any(name.startswith(prefix) for name in fresh):
                raise ConfigError(f"--reinit {prefix}: no parameter of the model starts with it")
        tensors, _, source = read_checkpoint(Path(checkpoint))
        report = load_tensors_into(self.model, tensors, Path(checkpoint), source)  # fp16 files cast on copy
        self.model.load_state_dict(fresh, strict=False)
        self.config = dataclasses.replace(self.config, init_from=f"{checkpoint} {sha256_of(Path(checkpoint))}",
                                          reinitialized=tuple(reinitialize))
        self.optimizer = _adamw(self.model, self.config, self.memory_head)
        return f"{report}; kept fresh: {', '.join(reinitialize)}" if reinitialize else str(report)

    def start_memory(self, locality: float | None = None, mask_gain: float | None = None) -> None:
        """The memory starts (training/memory_start.py) on the weights step 0 begins from (after
        `start_from`): the mask gain, then the locality; recorded in the config. ConfigError once
        the run has started."""
        from mqc_edge.training.memory_start import add_memory_locality, amplify_memory_mask

        if self.state.step:
            raise ConfigError(f"--memory-locality / --memory-mask-gain: the run in {self.run_dir} has started; "
                              "it cannot change its start")
        if mask_gain is not None:
            amplify_memory_mask(self.model.sam, mask_gain)
            self.config = dataclasses.replace(self.config, memory_mask_gain=mask_gain)
        if locality is not None:
            add_memory_locality(self.model.sam, locality)
            self.config = dataclasses.replace(self.config, memory_locality=locality)

    @classmethod
    def resume(cls, run_dir: Path, device: str = "cpu") -> Trainer:
        """The run in `run_dir` as its last checkpoint left it: its own configs, weights,
        optimizer state and history."""
        path = Path(run_dir) / STATE_FILE
        if not path.is_file():
            raise CheckpointError(f"{path}: nothing to resume (no training state in {run_dir})")
        saved = torch.load(path, map_location=device, weights_only=True)
        config = TrainConfig.from_json(saved["config"])
        trainer = cls(run_dir, config, MQCSAMConfig.from_json(saved["model_config"], str(path)), device)
        trainer.model.load_state_dict(saved["model"], strict=False)
        if trainer.memory_head is not None:
            trainer.memory_head.load_state_dict(saved["memory_head"])
        trainer.optimizer.load_state_dict(saved["optimizer"])
        trainer.state = TrainingState(**json.loads(saved["state"]))
        return trainer

    def save(self) -> None:
        """state.pt, model.safetensors and training.png, each written atomically."""
        weights = {k: v for k, v in self.model.state_dict().items() if not k.startswith(TEXT_MODEL_PREFIX)}
        content = {
            "model": weights,
            "optimizer": self.optimizer.state_dict(),
            "state": json.dumps(dataclasses.asdict(self.state)),
            "config": self.config.to_json(),
            "model_config": self.model.config.to_json(),
            **({"memory_head": self.memory_head.state_dict()} if self.memory_head is not None else {}),
        }
        write_atomically(self.run_dir / STATE_FILE, lambda tmp: torch.save(content, tmp))
        save_checkpoint(self.model, self.run_dir / MODEL_FILE)
        plot_training(self.state, self.run_dir / PLOT_FILE)

    # ------------------------------------------------------------------ training
    def run(self, steps: int | None = None, progress: bool = True, time_limit_s: float | None = None,
            loader_workers: int = 0) -> TrainingState:
        """Train up to step `steps` (default: the config's), checkpointing on the way; stop early
        (checkpointed, `--resume` goes on) once `time_limit_s` seconds have passed. With
        `loader_workers` > 0 that many processes render the next steps' clips ahead (the same clips)."""
        target = min(steps if steps is not None else self.config.steps, self.config.steps)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        began = last_save = time.monotonic()
        bar = tqdm(total=target, initial=self.state.step, desc="train", unit="step", disable=not progress)
        smoothed = None
        with clip_loader(self.config, self.state.step, target, loader_workers) as clips:
            while self.state.step < target:
                if time_limit_s is not None and time.monotonic() - began > time_limit_s:
                    bar.write(f"time limit ({time_limit_s:.0f} s) reached at step {self.state.step}")
                    break
                loss = self.step(next(clips))
                smoothed = loss if smoothed is None else 0.98 * smoothed + 0.02 * loss
                bar.update(1)
                bar.set_postfix(loss=f"{smoothed:.3f}", lr=f"{learning_rate(self.config, self.state.step - 1):.1e}")
                if self.config.validate_every and self.state.step % self.config.validate_every == 0:
                    self.state.validation.append({"step": self.state.step, **self.validate()})
                    bar.write(f"step {self.state.step}: validation J&F {self.state.validation[-1]}")
                if time.monotonic() - last_save > 60 * self.config.checkpoint_minutes:
                    self.save()
                    last_save = time.monotonic()
        bar.close()
        self.save()
        return self.state

    def step(self, clips: list[Clip] | None = None) -> float:
        """One optimisation step on step `state.step`'s clips (`step_clips`; rendered here when
        not given); returns its loss."""
        index = self.state.step
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.config, index)
        torch.manual_seed(self.config.seed * 1_000_003 + index)
        self.model.train()
        self.unroller.tracked_content = tracked_content(self.config, index)
        clips = step_clips(self.config, index) if clips is None else clips
        losses = self._batched_losses(clips) if self.config.batch_clips else self._clip_losses(clips[0])
        loss = losses.mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        head = list(self.memory_head.parameters()) if self.memory_head is not None else []
        torch.nn.utils.clip_grad_norm_([*self.model.parameters(), *head], self.config.grad_clip)
        self.optimizer.step()
        self.state.step += 1
        value = float(loss.detach())
        self.state.losses.append([index, value])
        starts = sorted({clip.start for clip in clips})
        with open(self.run_dir / LOG_FILE, "a") as log:
            log.write(json.dumps({"step": index, "loss": value, "lr": self.optimizer.param_groups[0]["lr"],
                                  "start": starts[0] if len(starts) == 1 else starts, "objects": len(losses),
                                  "tracked_content": self.unroller.tracked_content}) + "\n")
        return value

    def _clip_losses(self, clip: Clip) -> torch.Tensor:
        """One clip, each object through `ClipUnroller` (the mode its start implies) -> `[objects]`."""
        starts = [self._start(clip.start, obj) for obj in clip.objects]
        outputs = self.unroller.objects(self._images(clip), starts)
        return self._objects_losses(outputs, clip.objects)

    def _objects_losses(self, outputs: list[list[FrameOutput]], objects) -> torch.Tensor:
        """Per object: `object_loss`, plus the box-token loss (text starts) and the memory-read loss when
        they are on -> `[objects]`."""
        losses = torch.stack([object_loss(out, obj.masks, self.config) for out, obj in zip(outputs, objects)])
        if self.config.box_token_weight and outputs[0][0].prompt_sparse is not None:
            losses = losses + self.config.box_token_weight * self._box_token_losses(outputs, objects)
        if self.memory_head is None or len(outputs[0]) < 2:
            return losses
        tracked = [torch.cat([out[t].conditioned for out in outputs]) for t in range(1, len(outputs[0]))]
        own = np.stack([obj.masks for obj in objects])
        return losses + self.config.memory_read_weight * self._read_losses(tracked, own, _others(own))

    def _batched_losses(self, clips: list[Clip]) -> torch.Tensor:
        """B clips: the encoder once on every frame, box and click starts each as one SAM 2 mode
        batch over all clips (its loss batched too), text starts one object at a time -> `[objects]`."""
        frames = self.config.sampling.frames
        images = torch.from_numpy(np.concatenate([clip.images for clip in clips])).to(self.device)
        fpn0, fpn1, feat = self.unroller.stages["image_encoder"](images)
        losses = []
        for kind in ("box", "point"):
            pairs = [(c, obj) for c, clip in enumerate(clips) if clip.start == kind for obj in clip.objects]
            if pairs:
                features = stack_clip_features(feat, fpn0, fpn1, frames, [c for c, _ in pairs])
                prompts = np.stack([obj.box if kind == "box" else obj.point for _, obj in pairs])
                per_frame = self.batched.frames(*features, BatchedStart(kind, prompts))
                own = np.stack([obj.masks for _, obj in pairs])
                loss = self._batch_loss(per_frame, own)
                if self.memory_head is not None and len(per_frame) > 1:
                    others = np.stack([_union([o.masks for o in clips[c].objects if o is not obj], obj.masks)
                                       for c, obj in pairs])
                    tracked = [out.conditioned for out in per_frame[1:]]
                    loss = loss + self.config.memory_read_weight * self._read_losses(tracked, own, others)
                losses.append(loss)
        for c, clip in enumerate(clips):
            if clip.start == "text":
                frames_of = slice(c * frames, (c + 1) * frames)
                outputs = self.unroller.objects_from_features(
                    feat[frames_of], fpn0[frames_of], fpn1[frames_of], [self._start("text", obj) for obj in clip.objects])
                losses.append(self._objects_losses(outputs, clip.objects))
        return torch.cat(losses)

    def _box_token_losses(self, outputs: list[list[FrameOutput]], objects) -> torch.Tensor:
        """Text starts: `box_token_loss` of each object's fused frame-0 tokens against its box's -> `[objects]`."""
        size = (self.unroller.geometry.image_size,) * 2
        with torch.no_grad():
            boxes = [self.unroller.prompt_embeddings(point_prompt(obj.box, None, None, size, self.unroller.geometry),
                                                     self.device)[0] for obj in objects]
        return box_token_loss(torch.cat([out[0].prompt_sparse for out in outputs]), torch.cat(boxes))

    def _read_losses(self, tracked: list[torch.Tensor], own: np.ndarray, others: np.ndarray) -> torch.Tensor:
        """Memory-read loss per object, the mean over tracked frames: tracked[t - 1] memory attention's
        output of frame t `[N, hidden, h, w]`; own, others bool `[N, T, S, S]` -> `[N]`."""
        own_t = torch.from_numpy(own.astype(np.float32)).to(self.device)
        others_t = torch.from_numpy(others.astype(np.float32)).to(self.device)
        return torch.stack([memory_read_loss(self.memory_head, conditioned, own_t[:, t], others_t[:, t])
                            for t, conditioned in enumerate(tracked, start=1)]).mean(0)

    def _batch_loss(self, per_frame: list[FrameOutput], masks: np.ndarray) -> torch.Tensor:
        """`object_loss` of N SAM 2 mode objects (no S_robust there) from batched frame outputs;
        masks bool `[N, T, S, S]` -> `[N]`."""
        targets = torch.from_numpy(masks.astype(np.float32)).to(self.device)
        size = targets.shape[-1]
        totals = [batch_frame_loss(F.interpolate(out.hypotheses, size=(size, size), mode="bilinear", align_corners=False),
                                   out.predicted_iou, out.object_score.reshape(-1), targets[:, t],
                                   self.config.focal_weight, self.config.balanced_weight)
                  for t, out in enumerate(per_frame)]
        return torch.stack(totals).mean(0)

    def _images(self, clip: Clip) -> torch.Tensor:
        return torch.from_numpy(clip.images).to(self.device)

    def _start(self, kind: str, obj: ClipObject) -> Start:
        if kind == "text":
            hidden, mask = self.texts(obj.text)
            return Start("text", text_hidden=hidden.to(self.device), text_mask=mask.to(self.device))
        return Start(kind, box=obj.box, point=obj.point)

    # ------------------------------------------------------------------ validation
    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mean J&F over the validation clips' first object from text (MQC mode) and from the box
        (SAM 2 mode)."""
        self.model.eval()
        self.unroller.tracked_content = 1.0  # validation sees what inference sees
        sampling = dataclasses.replace(self.config.sampling, frames=self.config.validation_frames, degraded_share=0.0)
        scores: dict[str, list[float]] = {"text_jf": [], "box_jf": []}
        for index in range(self.config.validation_clips):
            clip = sample_clip(VALIDATION_SEED, index, sampling)
            referred = clip.objects[0]
            for kind in ("text", "box"):
                outputs = self.unroller(self._images(clip), self._start(kind, referred))
                scores[f"{kind}_jf"].append(clip_jf(outputs, referred.masks))
        return {name: float(np.mean(values)) for name, values in scores.items()}


def _union(masks: list[np.ndarray], like: np.ndarray) -> np.ndarray:
    """Element-wise OR of bool masks `[T, S, S]` (all False like `like` when there are none)."""
    return np.logical_or.reduce(masks) if masks else np.zeros_like(like)


def _others(own: np.ndarray) -> np.ndarray:
    """Per object of one clip, the union of the other objects' masks: `[K, T, S, S]` -> `[K, T, S, S]`."""
    return np.stack([_union([own[j] for j in range(len(own)) if j != k], own[k]) for k in range(len(own))])


def step_clips(config: TrainConfig, index: int) -> list[Clip]:
    """The clips of step `index`: clip `index` (one clip per step), or clips index*B .. index*B+B-1
    with `batch_clips` B; `clip_pool` N cycles over the first N. Depends on (config, index) only."""
    count = max(config.batch_clips, 1)
    numbers = [index * count + j for j in range(count)]
    pool = config.clip_pool
    return [sample_clip(config.seed, n % pool if pool else n, config.sampling) for n in numbers]


@contextlib.contextmanager
def clip_loader(config: TrainConfig, first: int, last: int, workers: int) -> Iterator[Iterator[list[Clip]]]:
    """The clips of steps first..last-1 in order: rendered on demand, or `workers` processes ahead."""
    if workers <= 0:
        yield (step_clips(config, index) for index in range(first, last))
        return
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        yield pool.imap(functools.partial(step_clips, config), range(first, last), chunksize=1)


def _text_source(model: MQCSAM, config: TrainConfig):
    """The frozen language model's states per expression: computed once each (`TextFeatureCache`), or
    read from `config.text_states` (`TextStates`), the language model then left out."""
    if config.text_states is None:
        return TextFeatureCache(model.text_encoder)
    from mqc_edge.training.text_states import TextStates

    states = TextStates(Path(config.text_states))
    if states.max_tokens != model.config.max_text_tokens:
        raise ConfigError(f"--text-states {config.text_states}: written for {states.max_tokens} text tokens, the model "
                          f"takes {model.config.max_text_tokens}")
    return states


def _adamw(model: MQCSAM, config: TrainConfig, head: MemoryReadHead | None = None) -> torch.optim.AdamW:
    """Weight decay on matrices only: norms, biases, embeddings and positional tables keep theirs.
    With `config.trainable`, parameters outside those prefixes are frozen (no gradient is computed).
    The memory-read head (training only) trains without decay."""
    decayed, kept = [], []
    for name, parameter in model.named_parameters():
        if config.trainable and not name.startswith(config.trainable) and "language_model" not in name:
            parameter.requires_grad_(False)
        if parameter.requires_grad:
            matrix = parameter.ndim >= 2 and "pos" not in name and "embed" not in name
            (decayed if matrix else kept).append(parameter)
    kept += list(head.parameters()) if head is not None else []
    groups = [{"params": decayed, "weight_decay": config.weight_decay}, {"params": kept, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.learning_rate, betas=(0.9, 0.999))


def upsampled(lowres: torch.Tensor, size: int) -> torch.Tensor:
    """`[K, h, w]` logits -> `[K, size, size]`, bilinear as SAM 2 upsamples its masks."""
    return F.interpolate(lowres[None], size=(size, size), mode="bilinear", align_corners=False)[0]


def object_loss(outputs: list[FrameOutput], masks: np.ndarray, config: TrainConfig) -> torch.Tensor:
    """One object's loss on a clip: the mean over frames of SAM 2's frame loss, plus S_robust's BCE
    against the chosen mask's IoU. masks: bool `[T, S, S]` ground truth."""
    masks = torch.from_numpy(masks.astype(np.float32)).to(outputs[0].hypotheses.device)
    size = masks.shape[-1]
    total = masks.new_zeros(())
    for out, target in zip(outputs, masks):
        total = total + frame_loss(upsampled(out.hypotheses, size), out.predicted_iou, out.object_score, target,
                                   config.focal_weight, config.balanced_weight).total
        if out.robustness is not None:
            chosen = upsampled(out.mask_lowres[0].detach(), size)[0] > 0
            iou = _iou(chosen, target > 0)
            total = total + config.robustness_weight * F.binary_cross_entropy(out.robustness.reshape(()), iou)
    return total / len(outputs)


def _iou(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    union = (pred | truth).sum()
    return ((pred & truth).sum() / union).float() if union > 0 else torch.ones((), device=pred.device)


def clip_jf(outputs: list[FrameOutput], masks: np.ndarray) -> float:
    """Mean over frames of (J + F) / 2 of the chosen masks (DAVIS J and F, data/metrics.py)."""
    size = masks.shape[-1]
    values = []
    for out, truth in zip(outputs, masks):
        pred = (upsampled(out.mask_lowres[0], size)[0] > 0).cpu().numpy()
        values.append(0.5 * (region_similarity(pred, truth) + boundary_f(pred, truth)))
    return float(np.mean(values))


def plot_training(state: TrainingState, path: Path) -> None:
    """Training loss (running mean over 50 steps) and validation J&F against the step."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    if state.losses:
        steps, losses = np.array(state.losses).T
        window = min(50, len(losses))
        left.plot(steps[window - 1:], np.convolve(losses, np.ones(window) / window, mode="valid"))
    left.set(xlabel="step", ylabel="loss (running mean of 50)", title="training loss")
    for key, label in (("text_jf", "MQC mode, text start"), ("box_jf", "SAM 2 mode, box start")):
        right.plot([v["step"] for v in state.validation], [v[key] for v in state.validation], marker="o", label=label)
    right.set(xlabel="step", ylabel="J&F", title="validation J&F", ylim=(0, 1))
    right.legend(loc="lower right")
    figure.tight_layout()
    write_atomically(path, lambda tmp: figure.savefig(tmp, format="png", dpi=90))
    plt.close(figure)
