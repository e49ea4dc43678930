"""Training clips from the synthetic satellite generator, and the cached frozen-text features.

Clip i of a run depends only on (seed, i): a resumed run sees exactly the clips an uninterrupted
one would. Clips are rendered at the model size, so the pixels the model learns from are the ones
the runtime's preprocessing gives it (ImageNet normalisation of an unresized frame).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from mqc_edge.data.synth import random_scene
from mqc_edge.errors import ConfigError
from mqc_edge.data.synth.scene import SceneRenderer
from mqc_edge.runtime.preprocess import preprocess_frame

if TYPE_CHECKING:
    import torch

TRAIN_SEED = 1_000_003
"""Seed of the training clips. Every test split, demo and validation set uses seeds below 1e6
(`VALIDATION_SEED`, the CLI's and the demo's defaults), so no scene is shared."""
VALIDATION_SEED = 900_001
"""Seed of the validation clips scored while training (J&F curve)."""
START_KINDS = ("text", "box", "point")
"""How frame 0 is prompted: text -> MQC mode (fusion + DAMI); box or point -> SAM 2 mode."""


@dataclass(frozen=True)
class ClipSampling:
    """What a training clip looks like; the defaults are ours, chosen for a CPU budget."""

    frames: int = 4  # frame 0 + 3 tracked frames: memory read and written every step
    image_size: int = 256  # rendered at the model size
    degraded_share: float = 0.3  # clips with noise/blur/haze/low light, for the degraded split
    start_shares: tuple[float, float, float] = (0.3, 0.5, 0.2)  # text, box, point starts: boxes teach prompting first
    box_jitter: float = 0.1  # box corners moved by up to this share of the box side (SAM 2 trains with noise)
    max_objects: int = 3  # objects prompted on one clip (SAM 2 trains several per video): one image, different
    # prompts, different targets, so that a model answering "the salient object" pays for it
    min_object_pixels: int = 16  # smaller frame-0 objects are not prompted (under one low-res mask cell)

    def __post_init__(self) -> None:
        if not 0.0 <= self.degraded_share <= 1.0:
            raise ConfigError(f"degraded-share: expected a share in [0, 1], got {self.degraded_share}")
        shares = self.start_shares
        if len(shares) != len(START_KINDS) or min(shares) < 0 or abs(sum(shares) - 1.0) > 1e-6:
            raise ConfigError(f"start-shares: expected three non-negative shares summing to 1, got {list(shares)}")


@dataclass(frozen=True)
class ClipObject:
    """One prompted object of a clip."""

    masks: np.ndarray  # bool [T, S, S] its ground truth
    text: str | None  # its frame-0 referring expression (None: not referable, box/point starts only)
    box: np.ndarray  # float32 [4] x0 y0 x1 y1 in model pixels (frame 0, jittered)
    point: np.ndarray  # float32 [2] x y of a positive click inside the frame-0 mask


@dataclass(frozen=True)
class Clip:
    """A short clip and the objects prompted on it, all started the same way."""

    images: np.ndarray  # float32 [T, 3, S, S], ImageNet-normalised
    start: str  # one of START_KINDS, for every object
    objects: tuple[ClipObject, ...]  # 1..max_objects; a text clip's are referable, the first always is


def sample_clip(seed: int, index: int, sampling: ClipSampling) -> Clip:
    """Clip `index` of the stream `seed`; scenes without a referable object are skipped
    deterministically (the next sub-seed is tried)."""
    for attempt in range(100):
        rng = np.random.default_rng([seed, index, attempt])
        clip = _try_clip(rng, sampling)
        if clip is not None:
            return clip
    raise RuntimeError(f"clip {index} of seed {seed}: no referable object in 100 scenes")


def _try_clip(rng: np.random.Generator, sampling: ClipSampling) -> Clip | None:
    size = sampling.image_size
    degrade = bool(rng.random() < sampling.degraded_share)
    scene = random_scene(rng, (size, size), sampling.frames, degrade)
    renderer = SceneRenderer(scene, int(rng.integers(2**31)))
    rendered = [renderer.frame(t) for t in range(sampling.frames)]
    ids = np.stack([frame_ids for _, frame_ids in rendered])
    texts = _one_expression_per_object(renderer.expressions(rendered[0][1]), ids[0], sampling, rng)
    if not texts:
        return None
    start = START_KINDS[int(rng.choice(len(START_KINDS), p=sampling.start_shares))]
    chosen = list(texts) if start == "text" else _prompted_ids(ids[0], next(iter(texts)), sampling, rng)
    objects = tuple(
        ClipObject(ids == obj_id, texts.get(obj_id), _jittered_box(ids[0] == obj_id, sampling.box_jitter, rng),
                   _positive_point(ids[0] == obj_id, rng))
        for obj_id in chosen[:sampling.max_objects]
    )
    images = np.concatenate([preprocess_frame(rgb, size) for rgb, _ in rendered])
    return Clip(images=images, start=start, objects=objects)


def _one_expression_per_object(expressions, ids0: np.ndarray, sampling: ClipSampling,
                               rng: np.random.Generator) -> dict[int, str]:
    """{object id: one of its expressions}, objects visible on frame 0 only, in random order."""
    texts: dict[int, list[str]] = {}
    for expression in expressions:
        if (ids0 == int(expression.obj_id)).sum() >= sampling.min_object_pixels:
            texts.setdefault(int(expression.obj_id), []).append(expression.text)
    order = rng.permutation(sorted(texts))
    return {int(obj_id): texts[int(obj_id)][int(rng.integers(len(texts[int(obj_id)])))] for obj_id in order}


def _prompted_ids(ids0: np.ndarray, referred: int, sampling: ClipSampling, rng: np.random.Generator) -> list[int]:
    """A referable object first, then other frame-0 objects (distractors included) in random order."""
    counts = np.bincount(ids0.ravel())
    others = [int(i) for i in np.nonzero(counts >= sampling.min_object_pixels)[0] if i not in (0, referred)]
    return [referred, *(int(i) for i in rng.permutation(others))] if others else [referred]


def _jittered_box(mask: np.ndarray, jitter: float, rng: np.random.Generator) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)
    side = np.array([box[2] - box[0], box[3] - box[1]] * 2, np.float32)
    box = box + rng.uniform(-jitter, jitter, 4).astype(np.float32) * side
    return np.clip(box, 0, mask.shape[0]).astype(np.float32)


def _positive_point(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    pick = int(rng.integers(len(xs)))
    return np.array([xs[pick] + 0.5, ys[pick] + 0.5], np.float32)


class TextFeatureCache:
    """Frozen language-model hidden states per expression, computed once (MiniLM stays frozen;
    only the projection after it trains). Synthetic expressions come from a small grammar, so
    the cache stays a few hundred entries."""

    def __init__(self, text_encoder) -> None:
        self.text_encoder = text_encoder
        self.hidden: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, text: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden states `[1, T, hidden]` and attention mask `[1, T]` on the CPU."""
        if text not in self.hidden:
            ids, mask = self.text_encoder.tokenize([text])
            device = self.text_encoder.projection.weight.device
            hidden = self.text_encoder.hidden_states(ids.to(device), mask.to(device))
            self.hidden[text] = (hidden.cpu(), mask)
        return self.hidden[text]
