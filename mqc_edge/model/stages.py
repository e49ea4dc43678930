"""SAM 2 split into the contract's stages: one `nn.Module` per stage, tensors in, tensors out.

Together they reproduce `SAM2Base.track_step` as Meta's `SAM2VideoPredictor` drives it
(sam2/modeling/sam2_base.py `_prepare_memory_conditioned_features`, `_forward_sam_heads`,
`_encode_new_memory`; sam2/sam2_video_predictor.py), but with static shapes: memory and
object pointers arrive as fixed slots with validity masks, and an empty slot is excluded
from attention exactly (its keys are masked out before the softmax). The exporter traces
these very modules, so their parameters are the contract's inputs, by name and in order.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from sam2.modeling.position_encoding import apply_rotary_enc
from sam2.modeling.sam2_base import NO_OBJ_SCORE, SAM2Base
from sam2.modeling.sam2_utils import get_1d_sine_pe
from torch import Tensor, nn

from mqc_edge.contract import MEMORY_STORAGE_DEFAULT, check_memory_storage
from mqc_edge.errors import ConfigError
from mqc_edge.kernels.masked_attention import masked_rope_attention
from mqc_edge.model.sam2_build import geometry_of

MASK_PROMPT_SCALE, MASK_PROMPT_BIAS = 20.0, -10.0
"""A binary mask prompt becomes logits of +-10 (sam2_base.py `_use_mask_as_output`)."""


def check_supported(model: SAM2Base) -> None:
    """The stages implement SAM 2.1's inference path; refuse settings they do not reproduce."""
    required = {
        "use_high_res_features_in_sam": True,
        "directly_add_no_mem_embed": True,
        "use_obj_ptrs_in_encoder": True,
        "pred_obj_scores": True,
        "use_mask_input_as_output_without_sam": True,
        "memory_temporal_stride_for_eval": 1,
        "only_obj_ptrs_in_the_past_for_eval": True,
    }
    wrong = {key: getattr(model, key) for key, want in required.items() if getattr(model, key) != want}
    if wrong:
        raise ConfigError(f"SAM 2 settings not supported by the stage backend: {wrong} (expected {required})")


class ImageEncoderStage(nn.Module):
    """Hiera + FPN; fpn0/fpn1 already projected by the decoder's conv_s0/conv_s1, as
    `SAM2Base.forward_image` does once per frame."""

    def __init__(self, model: SAM2Base) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        fpn = self.model.forward_image(image)["backbone_fpn"]
        return fpn[0], fpn[1], fpn[-1]


class PromptEncoderStage(nn.Module):
    """Points (box corners are points labelled 2/3) and an optional mask -> SAM prompts.

    The caller appends SAM's padding point itself, so the token count is the input's.
    `mask_prompt_lowres` is the mask prompt as output logits (`_use_mask_as_output`).
    """

    def __init__(self, model: SAM2Base) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, point_coords: Tensor, point_labels: Tensor, mask_prompt: Tensor, use_mask: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        encoder = self.model.sam_prompt_encoder
        sparse = encoder._embed_points(point_coords, point_labels, pad=False)
        size = encoder.image_embedding_size
        no_mask = encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(1, -1, *size)
        from_mask = encoder._embed_masks(self.model.mask_downsample(mask_prompt))
        dense = torch.where(use_mask.reshape(1, 1, 1, 1), from_mask, no_mask)
        logits = mask_prompt * MASK_PROMPT_SCALE + MASK_PROMPT_BIAS
        low = self.model.image_size // 4
        lowres = F.interpolate(logits, size=(low, low), mode="bilinear", align_corners=False, antialias=True)
        return sparse, dense, lowres


class NoMemoryStage(nn.Module):
    """The prompted frame sees no memory: SAM 2.1 adds `no_mem_embed` instead of attending
    (`directly_add_no_mem_embed`)."""

    def __init__(self, model: SAM2Base) -> None:
        super().__init__()
        self.model = model

    def forward(self, feat: Tensor) -> Tensor:
        return feat + self.model.no_mem_embed.reshape(1, -1, 1, 1)


class MemoryAttentionStage(nn.Module):
    """Memory attention over fixed memory and pointer slots (`_prepare_memory_conditioned_features`),
    for a batch of objects that share the frame's features (each object its own slots).

    Temporal encodings are looked up inside: a memory slot's id indexes `maskmem_tpos_enc`
    (id num_maskmem-1 for the conditioning frame, d-1 for a frame d steps back); a pointer's
    signed frame distance gets a sine encoding normalised by max_obj_ptrs - 1.
    """

    def __init__(self, model: SAM2Base, rope: Callable | None = None, attention: Callable | None = None) -> None:
        super().__init__()
        self.model = model
        self.rope = rope or sam2_rope  # export passes kernels.rope.RealAxialRope (no complex tensors)
        # export passes kernels.folded_readout.folded_rope_attention (values read on 64 channels)
        self.attention = attention or masked_rope_attention
        self.geometry = geometry_of(model)
        s = self.geometry.feat_size
        neck_pos = model.image_encoder.neck.position_encoding
        memory_pos = model.memory_encoder.position_encoding
        self.register_buffer("feat_pos", neck_pos(torch.zeros(1, model.hidden_dim, s, s)), persistent=False)
        self.register_buffer("memory_pos", memory_pos(torch.zeros(1, model.mem_dim, s, s)), persistent=False)

    def forward(
        self,
        feat: Tensor,
        memory: Tensor,
        memory_tpos: Tensor,
        memory_valid: Tensor,
        obj_ptrs: Tensor,
        obj_ptr_tpos: Tensor,
        obj_ptr_valid: Tensor,
    ) -> Tensor:
        g = self.geometry
        objects = memory.shape[0]
        mem_tokens, mem_pos = self._memory_tokens(memory, memory_tpos, memory_valid)
        ptr_tokens, ptr_pos = self._pointer_tokens(obj_ptrs, obj_ptr_tpos, obj_ptr_valid)
        hw = g.feat_size * g.feat_size
        key_valid = torch.cat(
            [memory_valid.repeat_interleave(hw, dim=1), obj_ptr_valid.repeat_interleave(g.tokens_per_ptr, dim=1)],
            dim=1,
        )
        curr = feat.flatten(2).permute(0, 2, 1).expand(objects, -1, -1)
        curr_pos = self.feat_pos.flatten(2).permute(0, 2, 1)
        out = attend_memory(
            self.model.memory_attention,
            curr,
            curr_pos,
            torch.cat([mem_tokens, ptr_tokens], dim=1),
            torch.cat([mem_pos, ptr_pos], dim=1),
            key_valid.reshape(objects, 1, 1, -1),
            num_ptr_tokens=ptr_tokens.shape[1],
            rope=self.rope,
            cross_attention=self.attention,
        )
        return out.permute(0, 2, 1).reshape(objects, *feat.shape[1:])

    def _memory_tokens(self, memory: Tensor, tpos: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
        """[B, N, mem, h, w] slots -> [B, N*h*w, mem] tokens (slot-major, as SAM 2 concatenates)."""
        memory = torch.where(valid[..., None, None, None], memory, torch.zeros_like(memory))
        objects, slots, channels = memory.shape[:3]
        tokens = memory.flatten(3).transpose(2, 3).reshape(objects, -1, channels)
        spatial = self.memory_pos.flatten(2).permute(0, 2, 1)
        temporal = self.model.maskmem_tpos_enc[tpos].reshape(objects, slots, 1, channels)
        return tokens, (spatial + temporal).reshape(objects, -1, channels)

    def _pointer_tokens(self, ptrs: Tensor, tpos: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
        """[B, P, hidden] pointers -> [B, P*k, mem] tokens, each pointer split into k chunks."""
        g = self.geometry
        ptrs = torch.where(valid[..., None], ptrs, torch.zeros_like(ptrs))
        pos = pointer_encoding(self.model, tpos)
        tokens = ptrs.reshape(ptrs.shape[0], -1, g.mem_dim)
        return tokens, pos.repeat_interleave(g.tokens_per_ptr, dim=1)


def pointer_encoding(model: SAM2Base, tpos: Tensor) -> Tensor:
    """[..., P] signed frame distances -> [..., P, mem_dim] temporal encodings of object pointers: a sine
    encoding normalised by max_obj_ptrs - 1, projected (`_prepare_memory_conditioned_features`)."""
    if not model.add_tpos_enc_to_obj_ptrs:
        return model.maskmem_tpos_enc.new_zeros(*tpos.shape, model.mem_dim)
    tpos_dim = model.hidden_dim if model.proj_tpos_enc_in_obj_ptrs else model.mem_dim
    pos = get_1d_sine_pe(tpos.to(torch.float32) / (model.max_obj_ptrs_in_encoder - 1), dim=tpos_dim)
    return model.obj_ptr_tpos_proj(pos)


def attend_memory(
    attention: nn.Module,
    curr: Tensor,
    curr_pos: Tensor,
    memory: Tensor,
    memory_pos: Tensor,
    key_valid: Tensor,
    num_ptr_tokens: int,
    rope: Callable,
    cross_attention: Callable | None = None,
) -> Tensor:
    """`MemoryAttention.forward` (batch first) with masked cross-attention keys;
    `cross_attention` defaults to `masked_rope_attention`."""
    cross_attention = cross_attention or masked_rope_attention
    output = curr + 0.1 * curr_pos if attention.pos_enc_at_input else curr
    for layer in attention.layers:
        hidden = layer.norm1(output)
        query = hidden + curr_pos if layer.pos_enc_at_attn else hidden
        output = output + layer.self_attn(query, query, v=hidden)
        hidden = layer.norm2(output)
        output = output + cross_attention(
            layer.cross_attn_image,
            q=hidden + curr_pos if layer.pos_enc_at_cross_attn_queries else hidden,
            k=memory + memory_pos if layer.pos_enc_at_cross_attn_keys else memory,
            v=memory,
            key_valid=key_valid,
            num_k_exclude_rope=num_ptr_tokens,
            rope=rope,
        )
        hidden = layer.norm3(output)
        output = output + layer.linear2(layer.activation(layer.linear1(hidden)))
    return attention.norm(output)


def sam2_rope(attn: nn.Module, q: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
    """Meta's complex-valued RoPE on the square query grid, as `RoPEAttention.forward` applies it."""
    side = math.sqrt(q.shape[-2])
    freqs_cis = attn.compute_cis(end_x=side, end_y=side).to(q.device)
    return apply_rotary_enc(q, k, freqs_cis=freqs_cis, repeat_freqs_k=attn.rope_k_repeat)


class MaskDecoderStage(nn.Module):
    """SAM mask decoder plus SAM 2's output selection and object pointer (`_forward_sam_heads`).

    `multimask` picks the best of the 3 multimask outputs by predicted IoU; otherwise the
    single mask, falling back to the best multimask one when unstable
    (`dynamic_multimask_via_stability`, decided on logits before the no-object fill).
    A batch of objects shares the frame's high-resolution features; each picks its own mask.
    """

    def __init__(self, model: SAM2Base) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        feat_conditioned: Tensor,
        fpn0: Tensor,
        fpn1: Tensor,
        sparse_prompt: Tensor,
        dense_prompt: Tensor,
        multimask: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        model = self.model
        decoder = model.sam_mask_decoder
        masks, ious, tokens, object_score = decoder.predict_masks(
            image_embeddings=feat_conditioned,
            image_pe=model.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse_prompt,
            dense_prompt_embeddings=dense_prompt,
            repeat_image=False,
            high_res_features=[fpn0, fpn1],
        )
        mask_index, token_index = self._select(masks, ious, multimask)
        is_object = object_score > 0
        masks = torch.where(is_object.reshape(-1, 1, 1, 1), masks, torch.full_like(masks, NO_OBJ_SCORE))
        mask = _pick(masks, mask_index)
        iou = _pick(ious, mask_index)
        obj_ptr = model.obj_ptr_proj(_pick(tokens, token_index)[:, 0])
        return masks, ious, mask, iou, self._occlusion_aware_ptr(obj_ptr, object_score), object_score

    def _select(self, masks: Tensor, ious: Tensor, multimask: Tensor) -> tuple[Tensor, Tensor]:
        """Per object: the index of the output mask and of the token its pointer comes from."""
        decoder = self.model.sam_mask_decoder
        best_multi = 1 + torch.argmax(ious[:, 1:], dim=1)
        single = torch.zeros_like(best_multi)
        if decoder.dynamic_multimask_via_stability:
            stable = decoder._get_stability_scores(masks[:, 0]) >= decoder.dynamic_multimask_stability_thresh
            single = torch.where(stable, single, best_multi)
        mask_index = torch.where(multimask, best_multi, single)
        if decoder.use_multimask_token_for_obj_ptr:
            return mask_index, torch.where(multimask, best_multi, torch.zeros_like(best_multi))
        return mask_index, torch.zeros_like(best_multi)

    def _occlusion_aware_ptr(self, obj_ptr: Tensor, object_score: Tensor) -> Tensor:
        model = self.model
        if model.soft_no_obj_ptr:
            appearing = object_score.sigmoid()
        else:
            appearing = (object_score > 0).to(obj_ptr.dtype)
        if model.fixed_no_obj_ptr:
            obj_ptr = appearing * obj_ptr
        return obj_ptr + (1 - appearing) * model.no_obj_ptr


class MemoryEncoderStage(nn.Module):
    """A frame's features and mask -> one memory slot (`_encode_new_memory`).

    The low-res logits are upsampled to S here (as `_forward_sam_heads` does), binarized on
    prompted frames or squashed by sigmoid otherwise, then scaled and biased. With `storage`
    "bfloat16" (the default: `SAM2VideoPredictor` stores memories in bfloat16, and training
    runs this stage) the result is rounded through bfloat16; "float32" leaves it unrounded
    (`MEMORY_STORAGE`).
    """

    def __init__(self, model: SAM2Base, storage: str = MEMORY_STORAGE_DEFAULT) -> None:
        super().__init__()
        check_memory_storage(storage)
        self.model = model
        self.storage = storage

    def forward(self, feat: Tensor, mask_lowres: Tensor, object_score: Tensor, binarize: Tensor) -> Tensor:
        model = self.model
        size = (model.image_size, model.image_size)
        high = F.interpolate(mask_lowres, size=size, mode="bilinear", align_corners=False)
        mask = torch.where(binarize.reshape(1, 1, 1, 1), (high > 0).to(high.dtype), torch.sigmoid(high))
        if model.sigmoid_scale_for_mem_enc != 1.0:
            mask = mask * model.sigmoid_scale_for_mem_enc
        if model.sigmoid_bias_for_mem_enc != 0.0:
            mask = mask + model.sigmoid_bias_for_mem_enc
        memory = model.memory_encoder(feat, mask, skip_mask_sigmoid=True)["vision_features"]
        if model.no_obj_embed_spatial is not None:
            absent = 1 - (object_score > 0).to(memory.dtype)
            memory = memory + absent[..., None, None] * model.no_obj_embed_spatial[..., None, None]
        if self.storage == "float32":
            return memory
        return memory.to(torch.bfloat16).to(torch.float32)


def _pick(x: Tensor, index: Tensor) -> Tensor:
    """x [B, K, ...], index [B] -> [B, 1, ...]: entry index[b] of row b."""
    shape = (x.shape[0], 1, *x.shape[2:])
    return torch.gather(x, 1, index.reshape(-1, *[1] * (x.dim() - 1)).expand(shape))


SAM2_STAGES: dict[str, type[nn.Module]] = {
    "image_encoder": ImageEncoderStage,
    "prompt_encoder": PromptEncoderStage,
    "no_memory": NoMemoryStage,
    "memory_attention": MemoryAttentionStage,
    "mask_decoder": MaskDecoderStage,
    "memory_encoder": MemoryEncoderStage,
}
"""Contract stage -> its module; `forward` names the stage's inputs in contract order (tested)."""


def build_stages(model: SAM2Base, memory_storage: str = MEMORY_STORAGE_DEFAULT) -> dict[str, nn.Module]:
    """Every contract stage of `model`, keyed by stage name; `memory_storage` is the memory
    encoder's (`MEMORY_STORAGE`). ConfigError for an unknown storage."""
    check_supported(model)
    stages = {name: stage(model) for name, stage in SAM2_STAGES.items() if name != "memory_encoder"}
    return {**stages, "memory_encoder": MemoryEncoderStage(model, memory_storage)}

