"""SAM 2 mode over many objects of many clips in one batch, with gradients: the GPU training path.

`ClipUnroller` runs one object at a time, as the Tracker does; on a GPU that is launch-bound (a
four-frame clip of three objects is thousands of small kernels). In SAM 2 mode every object
writes every frame into the same slots of its bank, so N objects, each on its own clip, can run
each stage once as a batch of N: the stages already take a batch of objects
(`model/stages.py`), here each object with its own frame's features. The bank bookkeeping is the
runtime's (`runtime/sam2/memory_bank.py`), once for all N objects, over buffers whose slots hold
the batch. Equal to `ClipUnroller` object by object (tests/training/test_batched_unroll.py).

MQC mode (text starts) stays on `ClipUnroller`: its gates decide per object which bank a frame
enters, so objects do not share a slot schedule.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from mqc_edge.contract import TRACKING_PROMPT_TOKENS, TensorSpec
from mqc_edge.runtime.prompts import PointPrompt, point_prompt
from mqc_edge.runtime.sam2.memory_bank import new_memory_bank
from mqc_edge.training.unroll import ClipUnroller, FrameOutput


class BatchedSlotBuffer:
    """A bank buffer whose slots each hold a batch `[N, ...]`; `stacked()` is the stage input
    `[N, slots, ...]` (a slot never written is zeros, as a fresh buffer)."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape
        self.slots: dict[int, Tensor] = {}

    def stacked(self) -> Tensor:
        first = next(iter(self.slots.values()))
        count = math.prod(self.shape[1:]) // math.prod(first.shape[1:])
        zeros = first.new_zeros(first.shape)
        stacked = torch.stack([self.slots.get(i, zeros) for i in range(count)], dim=1)
        return stacked.reshape(first.shape[0], *self.shape[1:])


class BatchedSlotWriter:
    """What the runtime's bank needs of its backend (`geometry`, `zeros`, `write_slot`), over
    `BatchedSlotBuffer`s: a slot write stores the whole batch."""

    def __init__(self, geometry) -> None:
        self.geometry = geometry

    def zeros(self, spec: TensorSpec) -> BatchedSlotBuffer:
        return BatchedSlotBuffer(tuple(int(d) for d in spec.shape))

    def write_slot(self, buffer: BatchedSlotBuffer, index: int, value: Tensor) -> None:
        buffer.slots[index] = value


@dataclasses.dataclass(frozen=True)
class BatchedStart:
    """Frame 0's prompts of N objects, all of one kind: 'box' (boxes `[N, 4]`) or 'point'
    (positive clicks `[N, 2]`), model pixels."""

    kind: str
    prompts: np.ndarray

    def prompt(self, size: int, geometry) -> PointPrompt:
        """The N objects' point prompts stacked: coords `[N, P, 2]`, labels `[N, P]`."""
        def one(prompt: np.ndarray) -> PointPrompt:
            if self.kind == "box":
                return point_prompt(prompt, None, None, (size, size), geometry)
            return point_prompt(None, prompt[None], np.ones(1, np.int32), (size, size), geometry)

        each = [one(prompt) for prompt in self.prompts]
        return PointPrompt(np.concatenate([p.coords for p in each]), np.concatenate([p.labels for p in each]),
                           each[0].num_points)


class BatchedSAM2Unroller:
    """`ClipUnroller`'s SAM 2 mode for N objects at once, each on its own clip's frames."""

    def __init__(self, unroller: ClipUnroller) -> None:
        self.unroller = unroller
        self.stages = unroller.stages
        self.geometry = unroller.geometry
        self.config = unroller.config

    def __call__(self, feat: Tensor, fpn0: Tensor, fpn1: Tensor, start: BatchedStart) -> list[list[FrameOutput]]:
        """The encoder's outputs of each object's clip, `[N, T, ...]` (`feat [N, T, C, h, w]`, `fpn0`,
        `fpn1` alike) -> per object, one `FrameOutput` per frame (as `ClipUnroller.objects`)."""
        per_frame = self.frames(feat, fpn0, fpn1, start)
        return [[out.of_object(n) for out in per_frame] for n in range(feat.shape[0])]

    def frames(self, feat: Tensor, fpn0: Tensor, fpn1: Tensor, start: BatchedStart) -> list[FrameOutput]:
        """As `__call__`, batched: one `FrameOutput` per frame whose tensors lead with the N objects
        (hypotheses `[N, K, h, w]`, predicted_iou `[N, K]`, object_score `[N, 1]`)."""
        objects, frames = feat.shape[:2]
        first, memory0 = self._first_frame(feat[:, 0], fpn0[:, 0], fpn1[:, 0], start)
        bank = new_memory_bank(BatchedSlotWriter(self.geometry))
        bank.register_conditioning_frame(0, memory0, first.obj_ptr)
        tracking = self._tracking_prompt(objects, feat.device)
        per_frame = [first]
        for t in range(1, frames):
            slots = {k: torch.from_numpy(np.repeat(v[None], objects, axis=0)).to(feat.device)
                     for k, v in bank.attention_inputs(t).items()}
            scale = self.unroller.tracked_content  # as ClipUnroller._tracked_inputs: 1 but in the memory curriculum
            feat_t, fpn0_t, fpn1_t = (x[:, t] if scale == 1.0 else x[:, t] * scale for x in (feat, fpn0, fpn1))
            conditioned = self.stages["memory_attention"](
                feat_t, bank.memory.stacked(), slots["memory_tpos"], slots["memory_valid"],
                bank.obj_ptrs.stacked(), slots["obj_ptr_tpos"], slots["obj_ptr_valid"],
            )
            out = self.unroller.decode_batch(conditioned, fpn0_t, fpn1_t, *tracking, self.unroller._tracking_multimask())
            binarize = torch.tensor(False, device=feat.device)
            memory = self.stages["memory_encoder"](feat[:, t], out.mask_lowres, out.object_score, binarize)
            bank.register_frame(t, memory, out.obj_ptr)
            per_frame.append(dataclasses.replace(out, written=("recent",), conditioned=conditioned))
        return per_frame

    def _first_frame(self, feat: Tensor, fpn0: Tensor, fpn1: Tensor, start: BatchedStart) -> tuple[FrameOutput, Tensor]:
        conditioned = self.stages["no_memory"](feat)
        prompt = start.prompt(self.geometry.image_size, self.geometry)
        sparse, dense = self._prompt(prompt, feat.device)
        out = self.unroller.decode_batch(conditioned, fpn0, fpn1, sparse, dense, self.config.multimask(prompt.num_points))
        binarize = torch.tensor(self.config.binarize_prompted_memory, device=feat.device)
        return out, self.stages["memory_encoder"](feat, out.mask_lowres, out.object_score, binarize)

    def _tracking_prompt(self, objects: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """The 'no point' prompt of tracked frames, encoded once for the whole batch."""
        sparse, dense = self.unroller.prompt_embeddings(PointPrompt.empty(TRACKING_PROMPT_TOKENS), device)
        return sparse.expand(objects, -1, -1), dense.expand(objects, -1, -1, -1)

    def _prompt(self, prompt: PointPrompt, device: torch.device) -> tuple[Tensor, Tensor]:
        sparse, dense = self.unroller.prompt_embeddings(prompt, device)
        return sparse, dense.expand(sparse.shape[0], -1, -1, -1)


def stack_clip_features(feat: Tensor, fpn0: Tensor, fpn1: Tensor, frames: int,
                        clip_of: Sequence[int]) -> tuple[Tensor, Tensor, Tensor]:
    """The image encoder's outputs of B clips (`[B * T, ...]`, clip-major) -> each object's clip
    `[N, T, ...]`, object n on clip `clip_of[n]`."""
    index = torch.as_tensor(list(clip_of), device=feat.device)
    return tuple(x.reshape(-1, frames, *x.shape[1:])[index] for x in (feat, fpn0, fpn1))
