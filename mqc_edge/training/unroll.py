"""One clip through MQC-SAM's contract stages with gradients, memory in the loop.

The stage modules are the ones the exporter traces and the torch backend runs
(`model/stages.py`, `model/mqc_stages.py`), and the memory bookkeeping is the runtime's own
(`runtime/sam2/memory_bank.py` for SAM 2 mode, `runtime/mqc/dami_memory.py` and `runtime/mqc/gates.py` for MQC
mode): which slot a frame enters, which it evicts, what the gates decide. Only the storage
differs: autograd forbids writing into a tensor an earlier frame's attention read, so a bank
buffer here is a table of slot tensors stacked anew for every read (`SlotBuffer`). The gates
decide on detached host values, as on the device (DESIGN section 3).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from mqc_edge.contract import TRACKING_PROMPT_TOKENS, ModelGeometry, TensorSpec
from mqc_edge.model.mqc_sam import MQCSAM
from mqc_edge.model.mqc_stages import build_mqc_stages, mqc_geometry_of
from mqc_edge.model.sam2_build import geometry_of
from mqc_edge.model.stages import build_stages
from mqc_edge.runtime.config import TrackerConfig
from mqc_edge.runtime.mqc.dami_memory import new_dami_bank
from mqc_edge.runtime.mqc.gates import (
    assess_ambiguity,
    new_innovation_state,
    should_register_prototype,
    update_innovation_gate,
)
from mqc_edge.runtime.sam2.memory_bank import new_memory_bank
from mqc_edge.runtime.prompts import PointPrompt, point_prompt


class SlotBuffer:
    """A bank buffer of `shape` held as {slot: tensor}; `stacked()` is the stage input."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape
        self.slots: dict[int, Tensor] = {}

    def stacked(self) -> Tensor:
        slot_shape = next(iter(self.slots.values())).shape
        count = math.prod(self.shape) // math.prod(slot_shape)
        zeros = next(iter(self.slots.values())).new_zeros(slot_shape)
        return torch.stack([self.slots.get(i, zeros) for i in range(count)]).reshape(self.shape)


class SlotWriter:
    """What the runtime's banks need of the backend they are bound to (`geometry`, `zeros`,
    `write_slot`), over `SlotBuffer`s."""

    def __init__(self, geometry: ModelGeometry) -> None:
        self.geometry = geometry

    def zeros(self, spec: TensorSpec) -> SlotBuffer:
        return SlotBuffer(tuple(int(d) for d in spec.shape))

    def write_slot(self, buffer: SlotBuffer, index: int, value: Tensor) -> None:
        buffer.slots[index] = value[0]


@dataclass(frozen=True)
class Start:
    """Frame 0's prompt: `kind` 'text' (MQC mode) or 'box' / 'point' (SAM 2 mode)."""

    kind: str
    text_hidden: Tensor | None = None  # [1, T, hidden] frozen language-model states
    text_mask: Tensor | None = None  # [1, T]
    box: np.ndarray | None = None  # [4] model pixels
    point: np.ndarray | None = None  # [2] model pixels, a positive click

    @property
    def mode(self) -> str:
        return "mqc" if self.kind == "text" else "sam2"


@dataclass(frozen=True)
class FrameOutput:
    """What the losses read of one frame."""

    hypotheses: Tensor  # [K, S/4, S/4] low-res logits: the 3 multimask outputs, or the single mask
    predicted_iou: Tensor  # [K]
    object_score: Tensor  # [1, 1] logit
    mask_lowres: Tensor  # [1, 1, S/4, S/4] the chosen mask
    robustness: Tensor | None  # S_robust [1] on MQC tracked frames (trained on detached inputs)
    written: tuple[str, ...]  # banks the frame entered
    obj_ptr: Tensor  # [1, hidden] object pointer, stored with the frame's memory
    conditioned: Tensor | None = None  # [1, hidden, h, w] memory attention's output (tracked frames only)
    prompt_sparse: Tensor | None = None  # [1, K, C] the fusion's sparse prompt tokens (frame 0 of a text start)

    def of_object(self, n: int) -> FrameOutput:
        """Object n of an output whose tensors lead with a batch of objects (`decode_batch`), shaped
        as one object's: hypotheses `[K, h, w]`, predicted_iou `[K]`, the rest `[1, ...]`."""
        conditioned = None if self.conditioned is None else self.conditioned[n:n + 1]
        sparse = None if self.prompt_sparse is None else self.prompt_sparse[n:n + 1]
        return FrameOutput(self.hypotheses[n], self.predicted_iou[n], self.object_score[n:n + 1],
                           self.mask_lowres[n:n + 1], self.robustness, self.written, self.obj_ptr[n:n + 1], conditioned,
                           sparse)


class ClipUnroller:
    """Runs `model` over a clip as the Tracker would, keeping the graph for backpropagation."""

    def __init__(self, model: MQCSAM, config: TrackerConfig = TrackerConfig(mode="mqc")) -> None:
        self.model = model
        self.config = config
        self.stages = {**build_stages(model.sam), **build_mqc_stages(model)}
        self.geometry = dataclasses.replace(geometry_of(model.sam), mqc=mqc_geometry_of(model))
        self.writer = SlotWriter(self.geometry)
        self.tracked_content = 1.0  # share of tracked frames' image content (TrainConfig.memory_curriculum)

    def __call__(self, images: Tensor, start: Start) -> list[FrameOutput]:
        """images `[T, 3, S, S]` normalised -> one `FrameOutput` per frame."""
        return self.objects(images, [start])[0]

    def objects(self, images: Tensor, starts: Sequence[Start]) -> list[list[FrameOutput]]:
        """Several objects on one clip: the image encoder runs once, then each object's prompt and
        memory path as the Tracker runs each object (its own bank and gate state) -> per object,
        one `FrameOutput` per frame."""
        fpn0, fpn1, feat = self.stages["image_encoder"](images)
        return self.objects_from_features(feat, fpn0, fpn1, starts)

    def objects_from_features(self, feat: Tensor, fpn0: Tensor, fpn1: Tensor,
                              starts: Sequence[Start]) -> list[list[FrameOutput]]:
        """`objects` on the image encoder's outputs of the clip (`[T, ...]` each), already computed."""
        tracking = self.prompt_embeddings(PointPrompt.empty(TRACKING_PROMPT_TOKENS), feat.device)
        return [self._object(feat, fpn0, fpn1, tracking, start) for start in starts]

    def _object(self, feat: Tensor, fpn0: Tensor, fpn1: Tensor, tracking: tuple[Tensor, Tensor],
                start: Start) -> list[FrameOutput]:
        first, memory0 = self._first_frame(feat[:1], fpn0[:1], fpn1[:1], start)
        track = self._track_mqc if start.mode == "mqc" else self._track_sam2
        return [first, *track(feat, fpn0, fpn1, tracking, first, memory0)]

    def _tracked_inputs(self, feat: Tensor, fpn0: Tensor, fpn1: Tensor, t: int) -> tuple[Tensor, Tensor, Tensor]:
        """Frame t's image features as memory attention and the decoder see them: scaled by
        `tracked_content` (1 at inference; below 1 only in the memory curriculum, where the memory
        must say where the target is). The memory encoder always reads the unscaled features."""
        scale = self.tracked_content
        frame = (feat[t:t + 1], fpn0[t:t + 1], fpn1[t:t + 1])
        return frame if scale == 1.0 else tuple(x * scale for x in frame)

    def _first_frame(self, feat: Tensor, fpn0: Tensor, fpn1: Tensor, start: Start) -> tuple[FrameOutput, Tensor]:
        conditioned = self.stages["no_memory"](feat)
        if start.kind == "text":
            text = self.model.text_encoder.project(start.text_hidden, start.text_mask)
            sparse, dense = self.stages["prompt_fusion"](conditioned, text.tokens, text.attention_mask)
            num_points = 0
        else:
            size = (self.geometry.image_size,) * 2
            box = start.box if start.kind == "box" else None
            points = start.point[None] if start.kind == "point" else None
            prompt = point_prompt(box, points, None if points is None else np.ones(1, np.int32), size, self.geometry)
            sparse, dense = self.prompt_embeddings(prompt, feat.device)
            num_points = prompt.num_points
        multimask = self.config.text_start_multimask if start.kind == "text" else self.config.multimask(num_points)
        out = self._decode(conditioned, fpn0, fpn1, sparse, dense, multimask)
        if start.kind == "text":
            out = dataclasses.replace(out, prompt_sparse=sparse)
        binarize = torch.tensor(self.config.binarize_prompted_memory, device=feat.device)
        memory0 = self.stages["memory_encoder"](feat, out.mask_lowres, out.object_score, binarize)
        return out, memory0

    def prompt_embeddings(self, prompt: PointPrompt, device: torch.device) -> tuple[Tensor, Tensor]:
        """The prompt encoder on `prompt` (coords `[B, P, 2]`) without a mask prompt -> sparse
        `[B, P, C]`, dense `[1, C, h, w]` (the no-mask embedding, the same for every object)."""
        size = self.geometry.image_size
        sparse, dense, _ = self.stages["prompt_encoder"](
            torch.from_numpy(prompt.coords).to(device), torch.from_numpy(prompt.labels).to(device),
            torch.zeros(1, 1, size, size, device=device), torch.tensor(False, device=device),
        )
        return sparse, dense

    def decode_batch(self, conditioned: Tensor, fpn0: Tensor, fpn1: Tensor, sparse: Tensor, dense: Tensor,
                     multimask: bool) -> FrameOutput:
        """The mask decoder on a batch of objects -> their outputs, batch first (`of_object` takes one)."""
        flag = torch.full((conditioned.shape[0],), multimask, device=conditioned.device)
        masks, ious, mask, _, obj_ptr, object_score = self.stages["mask_decoder"](
            conditioned, fpn0, fpn1, sparse, dense, flag
        )
        chosen = slice(1, None) if multimask else slice(0, 1)
        return FrameOutput(masks[:, chosen], ious[:, chosen], object_score, mask, None, (), obj_ptr)

    def _decode(self, conditioned: Tensor, fpn0: Tensor, fpn1: Tensor, sparse: Tensor, dense: Tensor,
                multimask: bool) -> FrameOutput:
        return self.decode_batch(conditioned, fpn0, fpn1, sparse, dense, multimask).of_object(0)

    def _tracking_multimask(self) -> bool:
        return self.config.multimask_for_tracking and self.config.multimask(0)

    def _track_sam2(self, feat, fpn0, fpn1, tracking, first, memory0) -> list[FrameOutput]:
        """SAM 2's selection: the prompted frame plus the most recent frames, every frame written."""
        bank = new_memory_bank(self.writer)
        bank.register_conditioning_frame(0, memory0, first.obj_ptr)
        outputs = []
        for t in range(1, feat.shape[0]):
            slots = {k: torch.from_numpy(v[None]).to(feat.device) for k, v in bank.attention_inputs(t).items()}
            feat_t, fpn0_t, fpn1_t = self._tracked_inputs(feat, fpn0, fpn1, t)
            conditioned = self.stages["memory_attention"](
                feat_t, bank.memory.stacked(), slots["memory_tpos"], slots["memory_valid"],
                bank.obj_ptrs.stacked(), slots["obj_ptr_tpos"], slots["obj_ptr_valid"],
            )
            out = self._decode(conditioned, fpn0_t, fpn1_t, *tracking, self._tracking_multimask())
            new_memory = self._encode(feat[t:t + 1], out)
            bank.register_frame(t, new_memory, out.obj_ptr)
            outputs.append(dataclasses.replace(out, written=("recent",), conditioned=conditioned))
        return outputs

    def _track_mqc(self, feat, fpn0, fpn1, tracking, first, memory0) -> list[FrameOutput]:
        """DAMI over anchor / FIFO / prototypes; the runtime's gates decide the writes."""
        gates = self.config.gates
        bank = new_dami_bank(self.writer)
        bank.register_anchor(0, memory0, first.obj_ptr)
        summary0, _ = self._quality(feat[:1], first.mask_lowres, 0.0)
        innovation = new_innovation_state(gates, reference=summary0)
        previous_area, last_obj_ptr = _area(first.mask_lowres), first.obj_ptr
        gate_moga = self.model.config.moga  # as the runtime: the previous frame's pointer gates MoGA
        outputs = []
        for t in range(1, feat.shape[0]):
            slots = {k: torch.from_numpy(v).to(feat.device) for k, v in bank.dami_inputs(t).items()}
            feat_t, fpn0_t, fpn1_t = self._tracked_inputs(feat, fpn0, fpn1, t)
            conditioned = self.stages["dami_attention"](
                feat_t, bank.memory.stacked(), slots["memory_valid"], slots["fifo_age"],
                bank.obj_ptrs.stacked(), slots["obj_ptr_tpos"], slots["obj_ptr_valid"], slots["ptr_fifo_age"],
                last_obj_ptr if gate_moga else None,
            )
            out = self._decode(conditioned, fpn0_t, fpn1_t, *tracking, self._tracking_multimask())
            area = _area(out.mask_lowres)
            summary, robustness = self._quality(feat[t:t + 1], out.mask_lowres, abs(area - previous_area) / max(previous_area, 1))
            previous_area, last_obj_ptr = area, out.obj_ptr
            register_fifo = update_innovation_gate(innovation, summary, gates).register
            ambiguity = assess_ambiguity(_host(out.hypotheses), _host(out.predicted_iou), gates)
            score = float(robustness.detach())
            register_prototype = should_register_prototype(ambiguity, score, gates)
            written = []
            if register_fifo or register_prototype:
                new_memory = self._encode(feat[t:t + 1], out)
                if register_fifo:
                    bank.register_fifo(t, new_memory, out.obj_ptr)
                    written.append("fifo")
                if register_prototype and bank.register_prototype(t, new_memory, out.obj_ptr, score):
                    written.append("prototypes")
            outputs.append(dataclasses.replace(out, robustness=robustness, written=tuple(written),
                                               conditioned=conditioned))
        return outputs

    def _encode(self, feat: Tensor, out: FrameOutput) -> Tensor:
        binarize = torch.tensor(False, device=feat.device)
        return self.stages["memory_encoder"](feat, out.mask_lowres, out.object_score, binarize)

    def _quality(self, feat: Tensor, mask_lowres: Tensor, area_change: float) -> tuple[np.ndarray, Tensor]:
        """Feature summary for the innovation gate (host) and S_robust, trained on detached
        inputs: the scorer learns to read a segmentation, not to reshape it."""
        change = torch.tensor([area_change], dtype=torch.float32, device=feat.device)
        summary, robustness = self.stages["quality_head"](feat.detach(), mask_lowres.detach(), change)
        return _host(summary)[0], robustness


def _host(tensor: Tensor) -> np.ndarray:
    return tensor.detach().float().cpu().numpy()


def _area(mask_lowres: Tensor) -> int:
    return int((mask_lowres.detach() > 0).sum())
