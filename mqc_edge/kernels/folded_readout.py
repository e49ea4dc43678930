"""Memory cross-attention that reads the 64-channel memory first and projects it after.

SAM 2's cross-attention to memory (one head) projects every memory token from 64 to 256
channels (`v_proj`), averages them with the softmax weights P and projects the result again
(`out_proj`). Both projections are linear and every row of P sums to one, so

    out_proj(P v_proj(M)) = (P M) (W_o W_v)^T + (W_o b_v + b_o)

exactly in real arithmetic: the weighted read happens on 64 channels instead of 256 and the
memory's value projection, recomputed for every stored frame on every frame, disappears. At
480 px with 7 memories that removes 9.36 of 37.70 GFLOP/frame from memory attention (cost
model on the exported graphs). Keys keep their projection: RoPE rotates them by position after it,
so it does not fold.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from mqc_edge.kernels.masked_attention import masked_attention, masked_rope_attention


def folds(attn: nn.Module) -> bool:
    """One head and a value input narrower than the attention: only then is folding exact and
    cheaper (a multi-head read would need one fold per head)."""
    return attn.num_heads == 1 and attn.v_proj.in_features < attn.v_proj.out_features


def folded_value_projection(attn: nn.Module) -> tuple[Tensor, Tensor]:
    """(W [in, out], b [out]) with v @ W + b == out_proj(v_proj(v)) for one head."""
    weight = attn.v_proj.weight.T @ attn.out_proj.weight.T
    bias = attn.out_proj(attn.v_proj.bias)
    return weight, bias


def folded_rope_attention(
    attn: nn.Module, q: Tensor, k: Tensor, v: Tensor, key_valid: Tensor, num_k_exclude_rope: int, rope: Callable
) -> Tensor:
    """Drop-in for `kernels.masked_attention.masked_rope_attention` (same arguments, same result)."""
    if not folds(attn):
        return masked_rope_attention(attn, q, k, v, key_valid, num_k_exclude_rope, rope)
    q = attn.q_proj(q).unsqueeze(1)
    k = attn.k_proj(k).unsqueeze(1)
    num_k_rope = k.shape[-2] - num_k_exclude_rope
    q, k_rope = rope(attn, q, k[:, :, :num_k_rope])
    k = torch.cat([k_rope, k[:, :, num_k_rope:]], dim=2)
    read = masked_attention(q, k, v.unsqueeze(1), key_valid).squeeze(1)
    weight, bias = folded_value_projection(attn)
    return read @ weight + bias
