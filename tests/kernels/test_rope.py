"""Real-valued RoPE equals sam2's complex `apply_rotary_enc` (issue 12: max abs error <= 1e-5)."""

from __future__ import annotations

import pytest
import torch
from sam2.modeling.position_encoding import apply_rotary_enc, compute_axial_cis
from sam2.modeling.sam.transformer import RoPEAttention

from mqc_edge.errors import ConfigError
from mqc_edge.kernels.masked_attention import masked_rope_attention
from mqc_edge.kernels.rope import RealAxialRope, apply_rotary_real, rope_tables
from mqc_edge.model.stages import sam2_rope

TOLERANCE = 1e-5  # issue 12
SIDE, HEAD_DIM = 8, 32


def _random(*shape: int, seed: int) -> torch.Tensor:
    return 3 * torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("repeats", [1, 7])
def test_real_rope_equals_complex_rope(repeats: int) -> None:
    freqs_cis = compute_axial_cis(HEAD_DIM, SIDE, SIDE)
    cos, sin = rope_tables(freqs_cis)
    q = _random(2, 4, SIDE * SIDE, HEAD_DIM, seed=0)
    k = _random(2, 4, repeats * SIDE * SIDE, HEAD_DIM, seed=1)
    want_q, want_k = apply_rotary_enc(q, k, freqs_cis, repeat_freqs_k=repeats > 1)
    got_q, got_k = apply_rotary_real(q, k, cos, sin, repeat_freqs_k=repeats > 1)
    assert (got_q - want_q).abs().max() <= TOLERANCE
    assert (got_k - want_k).abs().max() <= TOLERANCE
    assert not torch.equal(got_k, k)  # the rotation did something


def test_no_keys_to_rotate_returns_them_untouched() -> None:
    cos, sin = rope_tables(compute_axial_cis(HEAD_DIM, SIDE, SIDE))
    keys = torch.zeros(1, 1, 0, HEAD_DIM)
    _, got = apply_rotary_real(_random(1, 1, SIDE * SIDE, HEAD_DIM, seed=2), keys, cos, sin)
    assert got is keys


def _memory_attention_layer() -> RoPEAttention:
    torch.manual_seed(0)  # SAM 2.1 memory cross-attention: 256 wide, 64-channel keys, k repeated
    return RoPEAttention(256, 1, downsample_rate=1, kv_in_dim=64, rope_k_repeat=True, feat_sizes=(SIDE, SIDE)).eval()


@pytest.mark.parametrize("num_k_exclude_rope", [0, 16])
def test_stage_hook_with_real_rope_equals_meta_rope_attention(num_k_exclude_rope: int) -> None:
    """Memory attention: 7 frames of RoPE keys plus object-pointer tokens that get no RoPE."""
    attn = _memory_attention_layer()
    q = _random(1, SIDE * SIDE, 256, seed=3)
    k = _random(1, 7 * SIDE * SIDE + num_k_exclude_rope, 64, seed=4)
    v = _random(1, k.shape[1], 64, seed=5)
    all_valid = torch.ones(1, 1, 1, k.shape[1], dtype=torch.bool)
    with torch.no_grad():
        meta = attn(q, k.clone(), v, num_k_exclude_rope=num_k_exclude_rope)
        complex_hook = masked_rope_attention(attn, q, k, v, all_valid, num_k_exclude_rope, rope=sam2_rope)
        real_rope = RealAxialRope([attn], SIDE)
        real_hook = masked_rope_attention(attn, q, k, v, all_valid, num_k_exclude_rope, rope=real_rope)
    assert (complex_hook - meta).abs().max() <= TOLERANCE
    assert (real_hook - meta).abs().max() <= TOLERANCE


def test_real_rope_refuses_another_grid() -> None:
    attn = _memory_attention_layer()
    rope = RealAxialRope([attn], SIDE)
    with pytest.raises(ConfigError, match="tables for 8x8 tokens, got 16 query tokens"):
        rope(attn, torch.zeros(1, 1, 16, HEAD_DIM), torch.zeros(1, 1, 16, HEAD_DIM))
