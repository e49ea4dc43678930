"""The export's exact rewrites equal Meta's modules: Hiera blocks that leave the window padding
unprojected, and memory cross-attention that reads values before projecting them."""

from __future__ import annotations

import pytest
import torch

from mqc_edge.kernels.folded_readout import folded_rope_attention, folds
from mqc_edge.kernels.hiera_windows import UnpaddedWindowBlock, pad_with_vector
from mqc_edge.kernels.masked_attention import masked_rope_attention
from mqc_edge.kernels.rope import RealAxialRope
from mqc_edge.model.sam2_build import build_sam21


@pytest.fixture(scope="module")
def tiny256():
    return build_sam21("tiny", image_size=256, seed=0).eval()


def _trunk_input(trunk, image_size: int, seed: int) -> list[torch.Tensor]:
    """The input every block of the trunk sees on a random image."""
    generator = torch.Generator().manual_seed(seed)
    x = trunk.patch_embed(torch.randn(1, 3, image_size, image_size, generator=generator))
    x = x + trunk._get_pos_embed(x.shape[1:3])
    inputs = []
    for block in trunk.blocks:
        inputs.append(x)
        x = block(x)
    return inputs


@pytest.mark.parametrize("image_size", [256, 480])
def test_every_hiera_block_equals_meta_s_including_padded_and_pooled_ones(image_size: int) -> None:
    model = build_sam21("tiny", image_size=image_size, seed=1).eval()
    trunk = model.image_encoder.trunk
    padded = 0
    with torch.no_grad():
        for block, x in zip(trunk.blocks, _trunk_input(trunk, image_size, seed=2)):
            window = block.window_size
            padded += bool(window and (x.shape[1] % window or x.shape[2] % window))
            want, got = block(x), UnpaddedWindowBlock(block)(x)
            assert got.shape == want.shape
            torch.testing.assert_close(got, want, rtol=1e-4, atol=2e-5)
    assert padded >= 4, "the test must cover padded windows (stage 3 and 4 of SAM 2.1 tiny)"


def test_padding_copies_the_vector_and_leaves_real_cells_bit_exact() -> None:
    x = torch.randn(1, 3, 5, 4)
    value = torch.tensor([1.0, 2.0, 3.0, 4.0])
    padded = pad_with_vector(x, value, pad_h=2, pad_w=1)
    assert padded.shape == (1, 5, 6, 4)
    assert torch.equal(padded[:, :3, :5], x)
    assert torch.equal(padded[0, 4, 2], value) and torch.equal(padded[0, 1, 5], value)


def test_folded_readout_equals_projected_values_with_masked_keys(tiny256) -> None:
    attn = tiny256.memory_attention.layers[0].cross_attn_image
    assert folds(attn)
    rope = RealAxialRope([attn], side=16)
    generator = torch.Generator().manual_seed(3)
    q = torch.randn(1, 256, 256, generator=generator)
    k = torch.randn(1, 3 * 256 + 8, 64, generator=generator)
    v = torch.randn(1, 3 * 256 + 8, 64, generator=generator) * 4
    valid = torch.ones(1, 1, 1, k.shape[1], dtype=torch.bool)
    valid[..., 256:512] = False  # an empty memory slot
    with torch.no_grad():
        want = masked_rope_attention(attn, q, k, v, valid, num_k_exclude_rope=8, rope=rope)
        got = folded_rope_attention(attn, q, k, v, valid, num_k_exclude_rope=8, rope=rope)
        v_changed = v.clone()
        v_changed[:, 256:512] = 1e6  # what a masked key holds cannot matter
        masked = folded_rope_attention(attn, q, k, v_changed, valid, num_k_exclude_rope=8, rope=rope)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert torch.equal(masked, got)
    assert (got - want).abs().max() < 1e-3 * want.abs().max()


def test_multi_head_attention_is_not_folded(tiny256) -> None:
    attn = tiny256.memory_attention.layers[0].cross_attn_image
    attn.num_heads = 2
    try:
        assert not folds(attn)
    finally:
        attn.num_heads = 1
