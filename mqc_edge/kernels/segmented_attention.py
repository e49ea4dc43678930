"""DAMI segmented-softmax attention in an export-friendly form, and its numpy reference.

DAMI (CroBIM-V, arXiv 2601.12076) reads each memory bank with its own softmax and fuses the
read-outs with learnable weights: out = sum_s w_s softmax_s(Q K_s^T / sqrt(d) + b_s) V_s over
the valid keys of bank s. `model/dami.py` calls this kernel, so the torch reference and the
exported graph share it; the numpy reference states the meaning directly (each bank's softmax
over only its valid keys, an empty bank contributing zero) and the kernel is tested against it.

Each segment subtracts its own max: with one global max, a segment trailing it by more than
~17 (FP16) or ~100 (FP32) in logit would underflow to 0/0. An invalid key's logit is replaced
by the dtype's lowest finite value and its weight then multiplied by 0, so there is no inf, no
IsInf and no 0/0 anywhere in the graph (TensorRT FP16 kernels and constant folding mishandle
infinities), and even NaN in an invalid slot cannot leak. Segments are static slices of the
key axis, so every shape is fixed.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor


def segmented_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    key_valid: Tensor,
    key_bias: Tensor,
    segment_lengths: tuple[int, ...],
    segment_weights: Tensor,
) -> Tensor:
    """q `[B, h, Nq, d]`, k `[B, h, Nk, d]` and v `[B, h, Nk, dv]` grouped by segment, key_valid
    `[B, Nk]` bool, key_bias `[B, Nk]`, segment_weights `[S]` -> `[B, h, Nq, dv]`."""
    logits = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]) + key_bias[:, None, None, :]
    valid = key_valid[:, None, None, :]
    lowest = torch.finfo(logits.dtype).min
    logits = torch.where(valid, logits, torch.full_like(logits, lowest))
    values = torch.where(key_valid[:, None, :, None], v, torch.zeros_like(v))
    out = q.new_zeros(*q.shape[:-1], v.shape[-1])
    start = 0
    for index, length in enumerate(segment_lengths):
        keys = slice(start, start + length)
        start += length
        if length == 0:  # a bank with no slots at all (static): nothing to read
            continue
        weights = _segment_softmax(logits[..., keys], valid[..., keys])
        out = out + segment_weights[index] * (weights @ values[:, :, keys])
    return out


def _segment_softmax(logits: Tensor, valid: Tensor) -> Tensor:
    """Softmax over the valid keys of one segment; all zeros when none is valid."""
    peak = logits.amax(dim=-1, keepdim=True)
    numerator = torch.exp(logits - peak) * valid.to(logits.dtype)
    denominator = numerator.sum(dim=-1, keepdim=True).clamp(min=torch.finfo(logits.dtype).tiny)
    return numerator / denominator


def segmented_attention_reference(
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    key_valid: np.ndarray,
    key_bias: np.ndarray,
    segment_lengths: tuple[int, ...],
    segment_weights: np.ndarray,
) -> np.ndarray:
    """float64 numpy DAMI attention that drops invalid keys outright (the definition the
    kernel must equal); same shapes as `segmented_attention`."""
    q, k, v, key_bias = (np.asarray(a, np.float64) for a in (q, k, v, key_bias))
    out = np.zeros((*q.shape[:-1], v.shape[-1]), np.float64)
    bounds = np.cumsum((0, *segment_lengths))
    for batch in range(q.shape[0]):
        for segment, weight in enumerate(np.asarray(segment_weights, np.float64)):
            keys = np.arange(bounds[segment], bounds[segment + 1])
            keys = keys[np.asarray(key_valid[batch])[keys]]
            if keys.size == 0:
                continue
            logits = q[batch] @ k[batch][:, keys].transpose(0, 2, 1) / math.sqrt(q.shape[-1])
            logits = logits + key_bias[batch][keys]
            weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
            weights /= weights.sum(axis=-1, keepdims=True)
            out[batch] += weight * (weights @ v[batch][:, keys])
    return out
