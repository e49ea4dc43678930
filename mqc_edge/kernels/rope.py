"""Axial RoPE with real arithmetic, equal to sam2's complex `apply_rotary_enc`.

SAM 2's memory attention rotates query/key channel pairs (x0, x1) by complex multiplication
with `freqs_cis` (sam2/modeling/position_encoding.py `apply_rotary_enc`). ONNX has no complex
type, and the torch.export-based exporter refuses complex tensors, so the rotation is written
out: (x0 + i x1)(c + i s) = (x0 c - x1 s) + i (x0 s + x1 c), with c, s precomputed tables.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mqc_edge.errors import ConfigError


def rope_tables(freqs_cis: Tensor) -> tuple[Tensor, Tensor]:
    """sam2's complex table `[tokens, d/2]` -> real cos and sin tables of the same shape."""
    pairs = torch.view_as_real(freqs_cis).to(torch.float32)
    return pairs[..., 0].contiguous(), pairs[..., 1].contiguous()


def rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate channel pairs of `x [B, h, N, d]` by tables `[N, d/2]` (broadcast over B, h)."""
    pairs = x.reshape(*x.shape[:-1], -1, 2)
    x0, x1 = pairs[..., 0], pairs[..., 1]
    return torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1).flatten(-2)


def apply_rotary_real(
    xq: Tensor, xk: Tensor, cos: Tensor, sin: Tensor, repeat_freqs_k: bool = False
) -> tuple[Tensor, Tensor]:
    """`apply_rotary_enc` with real tables: queries use the grid table; keys too, tiled
    `Nk / Nq` times when `repeat_freqs_k` (memory keys are several frames on the query grid)."""
    if xk.shape[-2] == 0:
        return rotate(xq, cos, sin), xk
    if repeat_freqs_k:
        repeats = xk.shape[-2] // xq.shape[-2]
        cos_k, sin_k = cos.repeat(repeats, 1), sin.repeat(repeats, 1)
    else:
        cos_k, sin_k = cos, sin
    return rotate(xq, cos, sin), rotate(xk, cos_k, sin_k)


class RealAxialRope(nn.Module):
    """Drop-in for the `rope(attn, q, k)` hook of `model/stages.py`: tables fixed for one
    square feature grid (shapes are static), so the exported graph holds them as constants."""

    def __init__(self, attentions: list[nn.Module], side: int) -> None:
        super().__init__()
        tables = [attn.compute_cis(end_x=side, end_y=side) for attn in attentions]
        if any(not torch.equal(tables[0], table) for table in tables[1:]):
            raise ConfigError("RoPE: cross-attention layers use different frequency tables; one table expected")
        cos, sin = rope_tables(tables[0])
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        self.side = side

    def forward(self, attn: nn.Module, q: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
        if q.shape[-2] != self.side * self.side:
            raise ConfigError(f"RoPE: tables for {self.side}x{self.side} tokens, got {q.shape[-2]} query tokens")
        return apply_rotary_real(q, k, self.cos, self.sin, repeat_freqs_k=attn.rope_k_repeat)

