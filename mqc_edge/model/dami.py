"""DAMI: decoupled attention memory integration over SAM 2's memory-attention weights.

MQC-SAM (CroBIM-V, arXiv 2601.12076) splits the memory into three banks - the semantic anchor
(frame 0 with its calibrated mask), a short-term FIFO of recent frames, and discriminative
prototypes kept from ambiguous frames - and lets the current frame attend to each bank with its
own softmax; the three read-outs are fused with learnable weights w1..w3 (init 1.0):

    out = sum_s w_s * softmax(Q K_s^T / sqrt(d) + b_s) V_s

with b_s = 0 for anchor and prototypes and, for the FIFO, a learnable bias per FIFO age (init 0).
Everything else (self-attention, RoPE cross-attention projections, MLP, norms) is SAM 2's
`MemoryAttention`, passed in by the caller so that its weights exist once, under `sam.`.

Memory has a fixed number of slots with a validity mask (static shapes for export): an invalid
key contributes exactly nothing and a bank without a valid key contributes exactly zero.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import nn
from sam2.modeling.memory_attention import MemoryAttention, MemoryAttentionLayer
from sam2.modeling.position_encoding import apply_rotary_enc
from sam2.modeling.sam.transformer import RoPEAttention

from mqc_edge.contract import BANKS, MemorySplit
from mqc_edge.kernels.folded_readout import folded_value_projection, folds
from mqc_edge.kernels.segmented_attention import segmented_attention

if TYPE_CHECKING:
    from mqc_edge.model.moga import MoGAAdapters

NUM_SEGMENTS = len(BANKS)  # anchor, FIFO, prototypes


def _bank_order(split: MemorySplit, hw: int, pointer_tokens: int) -> torch.Tensor:
    """`[Nk]` permutation from SAM 2's key order (every slot's hw tokens, then every pointer's
    tokens) to DAMI's grouping by bank (each bank's slot tokens, then its pointer tokens).

    Built from the static counts with aranges, not by sorting bank ids in the graph: the shapes
    are fixed, and ONNX has no stable sort for the exporter to lower `argsort(stable=True)` to.
    """
    pointer_start = hw * split.memory_slots
    pieces = []
    for bank in BANKS:
        slots, pointers = split.bank_slots(bank)
        pieces.append(torch.arange(hw * slots.start, hw * slots.stop))
        pieces.append(torch.arange(pointer_start + pointer_tokens * pointers.start,
                                   pointer_start + pointer_tokens * pointers.stop))
    return torch.cat(pieces)


class DAMIMemory(NamedTuple):
    """The fixed-capacity memory one DAMI call reads (banks in `contract.BANKS` order)."""

    features: torch.Tensor  # [B, N_max, HW, C_mem] memory-encoder features, HW = query tokens
    pos: torch.Tensor  # [B, N_max, HW, C_mem] spatial + temporal encoding, as SAM 2 adds them
    slot_valid: torch.Tensor  # [B, N_max] bool
    fifo_age: torch.Tensor  # [B, split.fifo_slots] int64 recency rank, 0 = newest; selects the temporal bias
    pointers: torch.Tensor  # [B, N_ptr, T, C_mem] object pointers split into T = C / C_mem tokens
    pointer_pos: torch.Tensor  # [B, N_ptr, T, C_mem] temporal encoding of the pointers
    pointer_valid: torch.Tensor  # [B, N_ptr] bool
    pointer_fifo_age: torch.Tensor  # [B, split.fifo_pointers] int64, as fifo_age for FIFO pointers


class _Keys(NamedTuple):
    """The memory as one key sequence in SAM 2's order (slot tokens, then pointer tokens) for the
    projections and RoPE, plus the permutation that groups it by bank for `segmented_attention`."""

    memory: torch.Tensor  # [B, Nk, C_mem], SAM 2 order
    pos: torch.Tensor  # [B, Nk, C_mem], SAM 2 order
    num_pointer_tokens: int  # the last tokens in SAM 2 order, which get no RoPE
    order: torch.Tensor  # [Nk] int64: SAM 2 order -> grouped by bank
    lengths: tuple[int, int, int]  # keys per bank in grouped order
    valid: torch.Tensor  # [B, Nk] bool, grouped order
    bias: torch.Tensor  # [B, Nk], grouped order


class DAMIMemoryAttention(nn.Module):
    """DAMI's own parameters (w1..w3, FIFO temporal bias) and its forward over SAM 2's layers."""

    def __init__(self, split: MemorySplit) -> None:
        super().__init__()
        self.split = split
        self.segment_weights = nn.Parameter(torch.ones(NUM_SEGMENTS))  # w1..w3, paper init 1.0
        # one bias per FIFO recency rank, shared by a frame's memory and its pointer; paper init 0
        self.fifo_bias = nn.Parameter(torch.zeros(max(split.fifo_slots, split.fifo_pointers)))
        self.rope: Callable | None = None  # None: sam2's complex RoPE; export sets kernels.rope.RealAxialRope
        # export sets True: values read on the memory's channels, projected after (kernels/folded_readout.py)
        self.fold_values = False

    def forward(
        self,
        attention: MemoryAttention,
        curr: torch.Tensor,
        curr_pos: torch.Tensor,
        memory: DAMIMemory,
        moga: MoGAAdapters | None = None,
        object_pointer: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Current-frame tokens `[B, HW, C]` (+ pos) -> memory-conditioned tokens `[B, HW, C]`.

        Mirrors `MemoryAttention.forward` layer by layer, with the cross-attention replaced by
        `segmented_attention`; `moga` (gated on `object_pointer [B, C]`) adapts Q/K/V if given.
        """
        keys = self._flatten_memory(memory)
        gates = moga.gates(object_pointer) if moga is not None else None
        output = curr + 0.1 * curr_pos if attention.pos_enc_at_input else curr
        for index, layer in enumerate(attention.layers):
            output = _self_attend(layer, output, curr_pos)
            attended = self._cross_attend(layer, index, layer.norm2(output), curr_pos, keys, moga, gates)
            output = output + layer.dropout2(attended)
            hidden = layer.activation(layer.linear1(layer.norm3(output)))
            output = output + layer.dropout3(layer.linear2(layer.dropout(hidden)))
        return attention.norm(output)

    def _flatten_memory(self, memory: DAMIMemory) -> _Keys:
        hw, pointer_tokens = memory.features.shape[2], memory.pointers.shape[2]
        split = self.split

        def per_token(per_slot: torch.Tensor, per_pointer: torch.Tensor) -> torch.Tensor:
            return torch.cat(
                [per_slot.repeat_interleave(hw, dim=-1), per_pointer.repeat_interleave(pointer_tokens, dim=-1)], dim=-1
            )

        slot_bias = self._bias(memory.fifo_age, split.anchor_slots, split.prototype_slots)
        pointer_bias = self._bias(memory.pointer_fifo_age, split.anchor_pointers, split.prototype_pointers)
        order = _bank_order(split, hw, pointer_tokens)
        return _Keys(
            memory=torch.cat([memory.features.flatten(1, 2), memory.pointers.flatten(1, 2)], dim=1),
            pos=torch.cat([memory.pos.flatten(1, 2), memory.pointer_pos.flatten(1, 2)], dim=1),
            num_pointer_tokens=split.pointer_slots * pointer_tokens,
            order=order,
            lengths=tuple(n * hw + m * pointer_tokens for n, m in zip(split.slot_counts, split.pointer_counts)),
            valid=per_token(memory.slot_valid, memory.pointer_valid)[:, order],
            bias=per_token(slot_bias, pointer_bias)[:, order],
        )

    def _bias(self, fifo_age: torch.Tensor, before: int, after: int) -> torch.Tensor:
        """Per-slot bias `[B, before + F + after]`: 0 for anchor and prototypes, the FIFO's by rank."""
        fifo = self.fifo_bias[fifo_age.clamp(0, max(self.fifo_bias.shape[0] - 1, 0))]
        return torch.cat([fifo.new_zeros(fifo.shape[0], before), fifo, fifo.new_zeros(fifo.shape[0], after)], dim=1)

    def _cross_attend(
        self,
        layer: MemoryAttentionLayer,
        index: int,
        queries: torch.Tensor,
        curr_pos: torch.Tensor,
        keys: _Keys,
        moga: MoGAAdapters | None,
        gates: torch.Tensor | None,
    ) -> torch.Tensor:
        attn = layer.cross_attn_image
        if not isinstance(attn, RoPEAttention):
            raise TypeError(f"DAMI expects SAM 2.1's RoPE cross-attention, got {type(attn).__name__}")
        query_in = queries + curr_pos if layer.pos_enc_at_cross_attn_queries else queries
        key_in = keys.memory + keys.pos if layer.pos_enc_at_cross_attn_keys else keys.memory

        def project(name: str, linear: nn.Linear, x: torch.Tensor) -> torch.Tensor:
            out = linear(x)
            return out if moga is None else out + moga.delta(index, name, x, gates)

        q = _split_heads(project("q", attn.q_proj, query_in), attn.num_heads)
        k = _split_heads(project("k", attn.k_proj, key_in), attn.num_heads)
        q, k = _apply_rope(attn, q, k, keys.num_pointer_tokens, self.rope)
        if self.fold_values and moga is None and folds(attn):
            return self._folded_read(attn, q, k[:, :, keys.order], keys)
        v = _split_heads(project("v", attn.v_proj, keys.memory), attn.num_heads)
        out = segmented_attention(q, k[:, :, keys.order], v[:, :, keys.order], keys.valid, keys.bias, keys.lengths,
                                  self.segment_weights)
        return attn.out_proj(out.transpose(1, 2).flatten(2))

    def _folded_read(self, attn: RoPEAttention, q: torch.Tensor, k: torch.Tensor, keys: _Keys) -> torch.Tensor:
        """out_proj(sum_s w_s P_s v_proj(M_s)) read on M's channels: a column of ones beside M
        reads sum_s w_s [bank s non-empty], the weight of v_proj's bias (an empty bank's P_s is 0)."""
        memory = keys.memory[:, keys.order]
        values = torch.cat([memory, torch.ones_like(memory[..., :1])], dim=-1).unsqueeze(1)
        read = segmented_attention(q, k, values, keys.valid, keys.bias, keys.lengths, self.segment_weights)[:, 0]
        weight, _ = folded_value_projection(attn)
        value_bias = attn.out_proj.weight @ attn.v_proj.bias
        return read[..., :-1] @ weight + read[..., -1:] * value_bias + attn.out_proj.bias


def _self_attend(layer: MemoryAttentionLayer, output: torch.Tensor, curr_pos: torch.Tensor) -> torch.Tensor:
    """SAM 2's pre-norm self-attention block of a memory-attention layer, unchanged."""
    normed = layer.norm1(output)
    qk = normed + curr_pos if layer.pos_enc_at_attn else normed
    return output + layer.dropout1(layer.self_attn(qk, qk, v=normed))


def _split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """`[B, N, C]` -> `[B, heads, N, C / heads]`."""
    batch, tokens, channels = x.shape
    return x.view(batch, tokens, num_heads, channels // num_heads).transpose(1, 2)


def _apply_rope(
    attn: RoPEAttention, q: torch.Tensor, k: torch.Tensor, num_pointer_tokens: int, rope: Callable | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """SAM 2's axial RoPE: queries and every slot's spatial keys share the query grid; pointers get none.

    Uses the layer's own frequency table, rebuilt for a non-default square grid exactly as
    `RoPEAttention.forward` does (SAM 2 assumes a square stride-16 map).
    """
    num_rope = k.shape[-2] - num_pointer_tokens
    if rope is not None:  # the export's real-valued tables (kernels/rope.py)
        q, k_spatial = rope(attn, q, k[:, :, :num_rope])
    else:
        side = math.sqrt(q.shape[-2])
        if attn.freqs_cis.shape[0] != q.shape[-2]:
            attn.freqs_cis = attn.compute_cis(end_x=side, end_y=side)
        attn.freqs_cis = attn.freqs_cis.to(q.device)
        q, k_spatial = apply_rotary_enc(q, k[:, :, :num_rope], freqs_cis=attn.freqs_cis, repeat_freqs_k=True)
    return q, torch.cat([k_spatial, k[:, :, num_rope:]], dim=2)
