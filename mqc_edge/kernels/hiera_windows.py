"""Hiera's windowed attention without projecting the padding, equal to Meta's block.

A Hiera block with window w on an H x W grid that w does not divide pads the normalised
tokens with zeros to whole windows (sam2/modeling/backbones/utils.py `window_partition`), runs
the qkv and output projections on every padded token, then crops the padding away. A zero
token's qkv is the qkv bias, and the output projection acts per token, so projecting only
the real tokens, padding the qkv with its bias, and projecting after the crop gives the same
tensor with less work. SAM 2.1 tiny pads its 16x16 (256 px) stage-3 grid to 28x28 and its
30x30 (480 px) grid to 42x42: this removes 3.59 of 17.56 GFLOP/frame at 256 px and 5.87 of
56.58 at 480 px from the image encoder (cost model on the exported graphs).

Padded keys still take part in the attention, as in Meta's block: only the projections move.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from sam2.modeling.backbones.hieradet import MultiScaleBlock, do_pool
from sam2.modeling.backbones.utils import window_partition, window_unpartition
from torch import Tensor, nn


def _padding(size: int, window: int) -> int:
    return (window - size % window) % window


def pad_with_vector(x: Tensor, value: Tensor, pad_h: int, pad_w: int) -> Tensor:
    """[B, H, W, C] -> [B, H + pad_h, W + pad_w, C], new cells equal to `value [C]` (real cells
    untouched: no arithmetic on them, so the result is bit-exact where it is not padding)."""
    b, h, w, c = x.shape
    if pad_w:
        x = torch.cat([x, value.expand(b, h, pad_w, c)], dim=2)
    if pad_h:
        x = torch.cat([x, value.expand(b, pad_h, w + pad_w, c)], dim=1)
    return x


class UnpaddedWindowBlock(nn.Module):
    """Drop-in for a `MultiScaleBlock`; falls back to the block itself where nothing is padded."""

    def __init__(self, block: MultiScaleBlock) -> None:
        super().__init__()
        self.block = block

    def forward(self, x: Tensor) -> Tensor:
        block = self.block
        window = block.window_size
        if window == 0:  # global attention: nothing padded
            return block(x)
        height, width = x.shape[1:3]
        pad_h, pad_w = _padding(height, window), _padding(width, window)
        if pad_h == pad_w == 0:
            return block(x)
        shortcut = x
        x = block.norm1(x)
        if block.dim != block.dim_out:
            shortcut = do_pool(block.proj(x), block.pool)
        attn = block.attn
        qkv = pad_with_vector(attn.qkv(x), attn.qkv.bias, pad_h, pad_w)
        windows, _ = window_partition(qkv, window)
        out = _window_attention(windows, attn.num_heads, attn.q_pool)
        out_window = window // block.q_stride[0] if block.q_stride else window
        out_h, out_w = shortcut.shape[1:3]
        padded = (out_h + _padding(out_h, out_window), out_w + _padding(out_w, out_window))
        out = window_unpartition(out, out_window, padded, (out_h, out_w))
        x = shortcut + attn.proj(out)
        return x + block.mlp(block.norm2(x))


def _window_attention(qkv: Tensor, num_heads: int, q_pool: nn.Module | None) -> Tensor:
    """`MultiScaleAttention.forward` between its two projections: windows of qkv in,
    [windows, h', w', dim_out] attention read-outs out."""
    windows, height, width, _ = qkv.shape
    q, k, v = torch.unbind(qkv.reshape(windows, height * width, 3, num_heads, -1), 2)
    if q_pool is not None:
        q = do_pool(q.reshape(windows, height, width, -1), q_pool)
        height, width = q.shape[1:3]
        q = q.reshape(windows, height * width, num_heads, -1)
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return out.transpose(1, 2).reshape(windows, height, width, -1)


def unpadded_blocks(blocks: nn.ModuleList) -> nn.ModuleList:
    """Every block wrapped: a Hiera trunk's `blocks` with the padding left unprojected."""
    return nn.ModuleList(UnpaddedWindowBlock(block) for block in blocks)
