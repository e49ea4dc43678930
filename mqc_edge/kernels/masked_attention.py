"""SAM 2's RoPE cross-attention to memory with a boolean key mask: the read of every memory
attention stage.

`RoPEAttention.forward` (sam2/modeling/sam/transformer.py) plus a key mask: a masked key gets
zero softmax weight, so an empty slot gives exactly the result of leaving it out. The rotation
is a hook: Meta's complex RoPE for the torch reference (`model.stages.sam2_rope`), the real
tables of `kernels.rope` for export. `kernels.folded_readout` is the same read on the memory's
own channels.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def masked_rope_attention(
    attn: nn.Module, q: Tensor, k: Tensor, v: Tensor, key_valid: Tensor, num_k_exclude_rope: int, rope: Callable
) -> Tensor:
    """`RoPEAttention.forward` plus a boolean key mask `key_valid`; the last `num_k_exclude_rope`
    keys (object pointers) are not rotated."""
    q = attn._separate_heads(attn.q_proj(q), attn.num_heads)
    k = attn._separate_heads(attn.k_proj(k), attn.num_heads)
    v = attn._separate_heads(attn.v_proj(v), attn.num_heads)
    num_k_rope = k.shape[-2] - num_k_exclude_rope
    q, k_rope = rope(attn, q, k[:, :, :num_k_rope])
    k = torch.cat([k_rope, k[:, :, num_k_rope:]], dim=2)
    out = masked_attention(q, k, v, key_valid)
    return attn.out_proj(attn._recombine_heads(out))


def masked_attention(q: Tensor, k: Tensor, v: Tensor, key_valid: Tensor) -> Tensor:
    """Scaled dot-product attention of q `[B, h, Nq, d]` over k `[B, h, Nk, d]`, v `[B, h, Nk, dv]`
    with the boolean key mask `key_valid` `[B, 1, 1, Nk]`; a query whose keys are all masked reads 0.

    The mask enters as an additive bias on the keys (0, or the dtype's lowest value) and the
    all-masked guard acts on the `[B, h, Nq, dv]` output. Given the boolean mask itself, torch's
    ONNX exporter writes a NaN guard over the whole `[B, h, Nq, Nk]` score matrix (IsNaN + Where:
    47 of 375 ms of tiny@480's FP32 memory attention on one thread, profiled) and keeps the lowest
    value, not -inf, on masked scores, so an all-masked query read the mean of its values there
    and 0 in eager torch. Exactly the same weights on every other query: score + 0 is the score.
    """
    bias = torch.zeros(key_valid.shape, dtype=q.dtype, device=q.device).masked_fill(~key_valid, torch.finfo(q.dtype).min)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    return torch.where(key_valid.any(dim=-1, keepdim=True), out, torch.zeros_like(out))
