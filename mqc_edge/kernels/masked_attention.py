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
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=key_valid)
    return attn.out_proj(attn._recombine_heads(out))
