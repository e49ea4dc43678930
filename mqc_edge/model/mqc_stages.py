"""MQC-SAM's own stages (contract.py `_mqc_stage_specs`): one `nn.Module` each, tensors in and out.

They wrap the MQC parts of `MQCSAM` (model/mqc_sam.py) with the contract's static shapes, so
that the torch-free Tracker drives MQC mode through the same backend protocol as SAM 2 mode
and the exporter can trace them: text encoder, text->prompt fusion, DAMI memory attention over
fixed anchor / FIFO / prototype slots, and the quality head whose small outputs feed the DAMI
gates on the host (runtime/mqc/gates.py).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mqc_edge.contract import MQCGeometry, stage_specs
from mqc_edge.model.dami import DAMIMemory
from mqc_edge.model.mqc_sam import MQCSAM
from mqc_edge.model.sam2_build import geometry_of
from mqc_edge.model.stages import pointer_encoding


class TextEncoderStage(nn.Module):
    """Token ids (tokenised on the host, runtime/text.py) -> projected tokens, mask, pooled sentence."""

    def __init__(self, model: MQCSAM) -> None:
        super().__init__()
        self.text_encoder = model.text_encoder

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        embedding = self.text_encoder(input_ids, attention_mask)
        return embedding.tokens, embedding.attention_mask, embedding.pooled


class PromptFusionStage(nn.Module):
    """Frame-0 features (no-memory embedding added, as SAM 2's prompted frame) + text -> SAM prompts.

    The dense prompt is SAM's no-mask embedding plus the fusion's residual, the sparse prompt the
    fusion's K tokens: `MQCSAM.prompt_embeddings` with a text and no box.
    """

    def __init__(self, model: MQCSAM) -> None:
        super().__init__()
        self.model = model

    def forward(self, feat_conditioned: Tensor, text_tokens: Tensor, text_mask: Tensor) -> tuple[Tensor, Tensor]:
        encoder = self.model.sam.sam_prompt_encoder
        fused = self.model.fusion(feat_conditioned, encoder.get_dense_pe(), text_tokens, text_mask)
        no_mask = encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
        return fused.sparse, no_mask + fused.dense


class DAMIAttentionStage(nn.Module):
    """DAMI memory attention (CroBIM-V DAMI; model/dami.py) over the fixed slots of `MemorySplit`.

    Temporal encodings are looked up inside, as in SAM 2 mode: the anchor and the prototypes are
    selected frames, not recent ones, so they get SAM 2's conditioning-frame encoding (id
    num_maskmem - 1); a FIFO slot of recency rank a gets id a (SAM 2 gives a frame d steps back
    id d - 1). Pointers get SAM 2's sine encoding of their signed frame distance.
    """

    def __init__(self, model: MQCSAM) -> None:
        super().__init__()
        self.model = model
        sam = model.sam
        g = geometry_of(sam)
        s = g.feat_size
        self.mqc: MQCGeometry = mqc_geometry_of(model)
        self.tokens_per_ptr, self.mem_dim = g.tokens_per_ptr, g.mem_dim
        feat_pos = sam.image_encoder.neck.position_encoding(torch.zeros(1, g.hidden_dim, s, s))
        memory_pos = sam.memory_encoder.position_encoding(torch.zeros(1, g.mem_dim, s, s))
        self.register_buffer("feat_pos", feat_pos.flatten(2).permute(0, 2, 1), persistent=False)
        self.register_buffer("memory_pos", memory_pos.flatten(2).permute(0, 2, 1), persistent=False)

    def forward(
        self,
        feat: Tensor,
        memory: Tensor,
        memory_valid: Tensor,
        fifo_age: Tensor,
        obj_ptrs: Tensor,
        obj_ptr_tpos: Tensor,
        obj_ptr_valid: Tensor,
        ptr_fifo_age: Tensor,
        gate_obj_ptr: Tensor | None = None,
    ) -> Tensor:
        curr = feat.flatten(2).permute(0, 2, 1)
        dami_memory = DAMIMemory(
            features=memory.flatten(2).permute(0, 2, 1).unsqueeze(0),
            pos=self._memory_pos(fifo_age).unsqueeze(0),
            slot_valid=memory_valid.unsqueeze(0),
            fifo_age=fifo_age.unsqueeze(0),
            pointers=obj_ptrs.reshape(1, obj_ptrs.shape[0], self.tokens_per_ptr, self.mem_dim),
            pointer_pos=self._pointer_pos(obj_ptr_tpos),
            pointer_valid=obj_ptr_valid.unsqueeze(0),
            pointer_fifo_age=ptr_fifo_age.unsqueeze(0),
        )
        out = self.model.attend_memory(curr, self.feat_pos, dami_memory, gate_obj_ptr)
        return out.permute(0, 2, 1).reshape(feat.shape)

    def _memory_pos(self, fifo_age: Tensor) -> Tensor:
        """[N_max, HW, C_mem]: spatial encoding + each slot's temporal encoding."""
        sam, m = self.model.sam, self.mqc
        selected = fifo_age.new_full((1,), sam.num_maskmem - 1)
        tpos = torch.cat([selected.expand(m.anchor_slots), fifo_age, selected.expand(m.prototype_slots)])
        return self.memory_pos + sam.maskmem_tpos_enc[tpos].reshape(tpos.shape[0], 1, self.mem_dim)

    def _pointer_pos(self, obj_ptr_tpos: Tensor) -> Tensor:
        """[1, P, k, C_mem]: one encoding per pointer, shared by its k memory-width chunks."""
        pos = pointer_encoding(self.model.sam, obj_ptr_tpos)
        return pos[:, None, :].expand(-1, self.tokens_per_ptr, -1).unsqueeze(0)


class QualityHeadStage(nn.Module):
    """The small arrays the DAMI gates read (runtime/mqc/gates.py): a feature summary and S_robust.

    Summary row 0 is the frame's mean feature, row 1 the mean over the predicted target (weights
    = foreground probability pooled to stride 16), so the innovation gate's G_t reacts both to
    the scene and to the target (DAMI innovation: mean over positions of |f_t - f_hat_t|).
    The robustness score is MQC-SAM's learnable scorer `MQCSAM.robustness`.
    """

    def __init__(self, model: MQCSAM) -> None:
        super().__init__()
        self.model = model

    def forward(self, feat: Tensor, mask_lowres: Tensor, area_change: Tensor) -> tuple[Tensor, Tensor]:
        stride = mask_lowres.shape[-1] // feat.shape[-1]
        weights = F.avg_pool2d(torch.sigmoid(mask_lowres), stride)
        frame_mean = feat.mean(dim=(2, 3))
        target_mean = (feat * weights).sum(dim=(2, 3)) / weights.sum(dim=(2, 3)).clamp(min=1e-6)
        robustness = self.model.robustness(feat, mask_lowres, area_change)
        return torch.stack([frame_mean, target_mean], dim=1), robustness


class UncertaintyHeadStage(nn.Module):
    """CroBIM-U pixel-wise uncertainty of the chosen mask (`MQCSAM.uncertainty`, model/uncertainty.py):
    fpn0 `[1, 32, S/4, S/4]` + low-res logits `[K, 1, S/4, S/4]` -> `[K, 1, S/4, S/4]` in [0, 1]."""

    def __init__(self, model: MQCSAM) -> None:
        super().__init__()
        self.head = model.uncertainty

    def forward(self, fpn0: Tensor, mask_lowres: Tensor) -> Tensor:
        return self.head(fpn0, mask_lowres)


def mqc_geometry_of(model: MQCSAM) -> MQCGeometry:
    """The MQC part of the contract geometry, read off the model's config and the parts it was built with."""
    config = model.config
    return MQCGeometry(
        **dataclasses.asdict(config.memory_split),
        text_tokens=config.max_text_tokens,
        fusion_tokens=config.sparse_prompt_tokens,
        moga=config.moga,
        uncertainty=model.uncertainty is not None,
        text_encoder=model.text_encoder.language_model is not None,
    )


MQC_STAGES: dict[str, type[nn.Module]] = {
    "text_encoder": TextEncoderStage,
    "prompt_fusion": PromptFusionStage,
    "dami_attention": DAMIAttentionStage,
    "quality_head": QualityHeadStage,
    "uncertainty_head": UncertaintyHeadStage,
}
"""Contract stage -> its module; `forward` names the stage's inputs in contract order (tested). Which
of them a model has is the contract's to say (`stage_specs` of its `mqc_geometry_of`)."""


def build_mqc_stages(model: MQCSAM) -> dict[str, nn.Module]:
    """The MQC contract stages of `model`, keyed by stage name: those its geometry's contract lists
    (no `uncertainty_head` without the head, no `text_encoder` without the language model)."""
    specs = stage_specs(dataclasses.replace(geometry_of(model.sam), mqc=mqc_geometry_of(model)))
    return {name: stage(model) for name, stage in MQC_STAGES.items() if name in specs}
