"""DAMI segmented-softmax attention as one fused Triton kernel (flash-attention style).

Same meaning as `kernels/segmented_attention.py` (CroBIM-V's DAMI, arXiv 2601.12076): out =
sum_s w_s softmax_s(Q K_s^T / sqrt(d) + b_s) V_s over the valid keys of bank s. One program
owns a block of queries of one (batch, head) and walks the banks in order; inside a bank it
keeps a running max, a running sum and an accumulator (the online softmax), and when the bank
ends it adds w_s * acc / sum to the output and starts the next bank afresh. Each bank thus
subtracts its own max, as the reference defines it, and the logits never leave the chip.

Invalid keys (and the tail of a key block past its bank) get a finite very negative logit
and a weight multiplied by 0, and their values are replaced by 0 before the product: no inf,
and NaN in an empty slot cannot leak, as in the torch version. An empty bank reads 0.

Not wired into the pipeline: it is used only where a measurement shows it wins
(`time_against_torch`, run by scripts/gpu_check.sh). Triton is not a dependency of mqc-edge;
under `TRITON_INTERPRET=1` (set before this module is imported) it runs on CPU tensors.
"""

from __future__ import annotations

import itertools
import json
import math
import statistics
import sys

import torch
import triton
import triton.language as tl
from torch import Tensor

MASKED_LOGIT = tl.constexpr(-1.0e30)
"""Logit of an invalid key: finite, so max/exp never see inf; exp(it - any real max) is 0.
A constexpr: a Triton kernel may read no other kind of global."""


@triton.jit
def _segmented_attention_kernel(
    q_ptr, k_ptr, v_ptr, valid_ptr, bias_ptr, bounds_ptr, weights_ptr, out_ptr,
    heads, queries, keys, head_dim, value_dim, segments, scale,
    BLOCK_Q: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
    IEEE_DOT: tl.constexpr,
):
    """Grid (cdiv(queries, BLOCK_Q), batch * heads); contiguous q `[B, h, Nq, d]`, k `[B, h, Nk, d]`,
    v `[B, h, Nk, dv]`, valid `[B, Nk]` int8, bias `[B, Nk]` fp32, bounds `[S + 1]` int32,
    weights `[S]` fp32, out `[B, h, Nq, dv]` fp32."""
    query_block = tl.program_id(0)
    batch_head = tl.program_id(1)
    batch = batch_head // heads
    rows = query_block * BLOCK_Q + tl.arange(0, BLOCK_Q)
    dims = tl.arange(0, BLOCK_D)
    value_dims = tl.arange(0, BLOCK_DV)
    row_ok = rows < queries
    q = tl.load(q_ptr + (batch_head * queries + rows[:, None]) * head_dim + dims[None, :],
                mask=row_ok[:, None] & (dims[None, :] < head_dim), other=0.0)
    out = tl.zeros((BLOCK_Q, BLOCK_DV), dtype=tl.float32)
    for segment in range(0, segments):
        start = tl.load(bounds_ptr + segment)
        end = tl.load(bounds_ptr + segment + 1)
        running_max = tl.full((BLOCK_Q,), MASKED_LOGIT, dtype=tl.float32)
        running_sum = tl.zeros((BLOCK_Q,), dtype=tl.float32)
        acc = tl.zeros((BLOCK_Q, BLOCK_DV), dtype=tl.float32)
        for key_start in range(start, end, BLOCK_K):
            cols = key_start + tl.arange(0, BLOCK_K)
            valid = (cols < end) & (tl.load(valid_ptr + batch * keys + cols, mask=cols < end, other=0) != 0)
            k = tl.load(k_ptr + (batch_head * keys + cols[None, :]) * head_dim + dims[:, None],
                        mask=valid[None, :] & (dims[:, None] < head_dim), other=0.0)
            v = tl.load(v_ptr + (batch_head * keys + cols[:, None]) * value_dim + value_dims[None, :],
                        mask=valid[:, None] & (value_dims[None, :] < value_dim), other=0.0)
            bias = tl.load(bias_ptr + batch * keys + cols, mask=valid, other=0.0)
            if IEEE_DOT:
                logits = tl.dot(q, k, input_precision="ieee")
            else:
                logits = tl.dot(q, k)
            logits = tl.where(valid[None, :], logits * scale + bias[None, :], MASKED_LOGIT)
            new_max = tl.maximum(running_max, tl.max(logits, axis=1))
            rescale = tl.exp(running_max - new_max)
            p = tl.exp(logits - new_max[:, None]) * valid[None, :].to(tl.float32)
            running_sum = running_sum * rescale + tl.sum(p, axis=1)
            if IEEE_DOT:
                acc = acc * rescale[:, None] + tl.dot(p, v.to(tl.float32), input_precision="ieee")
            else:
                acc = acc * rescale[:, None] + tl.dot(p.to(v.dtype), v)
            running_max = new_max
        weight = tl.load(weights_ptr + segment)
        out += weight * acc / tl.maximum(running_sum, 1e-30)[:, None]
    tl.store(out_ptr + (batch_head * queries + rows[:, None]) * value_dim + value_dims[None, :], out,
             mask=row_ok[:, None] & (value_dims[None, :] < value_dim))


def segmented_attention_triton(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    key_valid: Tensor,
    key_bias: Tensor,
    segment_lengths: tuple[int, ...],
    segment_weights: Tensor,
    block_q: int = 64,
    block_k: int | None = None,
) -> Tensor:
    """q `[B, h, Nq, d]`, k `[B, h, Nk, d]` and v `[B, h, Nk, dv]` grouped by segment, key_valid
    `[B, Nk]` bool, key_bias `[B, Nk]`, segment_weights `[S]` -> `[B, h, Nq, dv]` in q's dtype.

    CUDA tensors, or CPU tensors under TRITON_INTERPRET=1. fp32 inputs multiply in IEEE fp32
    (no TF32), fp16/bf16 inputs on the tensor cores; softmax and accumulation are fp32.
    `block_k` defaults to 32 keys for fp32 and 64 otherwise: at d = 256, fp32 tiles of 64 x 64 need
    246 KB of shared memory (compiled for sm_90), over the 227 KB a Hopper block may hold.
    Raises ValueError when the lengths do not add up to Nk or the weights are not one per segment."""
    block_k = block_k or (32 if q.dtype == torch.float32 else 64)
    _check(q, k, v, key_valid, segment_lengths, segment_weights)
    batch, heads, queries, head_dim = q.shape
    keys, value_dim = k.shape[2], v.shape[3]
    bounds = torch.tensor([0, *itertools.accumulate(segment_lengths)], dtype=torch.int32, device=q.device)
    out = torch.empty(batch, heads, queries, value_dim, dtype=torch.float32, device=q.device)
    grid = (triton.cdiv(queries, block_q), batch * heads)
    _segmented_attention_kernel[grid](
        q.contiguous(), k.contiguous(), v.contiguous(), key_valid.to(torch.int8).contiguous(),
        key_bias.to(torch.float32).contiguous(), bounds, segment_weights.to(torch.float32).contiguous(), out,
        heads, queries, keys, head_dim, value_dim, len(segment_lengths), 1.0 / math.sqrt(head_dim),
        BLOCK_Q=block_q, BLOCK_K=block_k, BLOCK_D=_block(head_dim), BLOCK_DV=_block(value_dim),
        IEEE_DOT=q.dtype == torch.float32,
    )
    return out.to(q.dtype)


def _block(width: int) -> int:
    """A power of two >= 16 that holds `width` (tl.dot needs it)."""
    return max(16, triton.next_power_of_2(width))


def _check(q: Tensor, k: Tensor, v: Tensor, key_valid: Tensor, lengths: tuple[int, ...], weights: Tensor) -> None:
    if sum(lengths) != k.shape[2] or key_valid.shape[-1] != k.shape[2]:
        raise ValueError(f"segment lengths {lengths} add up to {sum(lengths)}, keys are {k.shape[2]}")
    if weights.numel() != len(lengths):
        raise ValueError(f"{weights.numel()} segment weights for {len(lengths)} segments")
    if not (q.shape[:2] == k.shape[:2] == v.shape[:2] and k.shape[2] == v.shape[2] and q.shape[3] == k.shape[3]):
        raise ValueError(f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)} do not agree")


def dami_inputs(
    batch: int = 1, heads: int = 1, queries: int = 900, head_dim: int = 256, value_dim: int = 64,
    segment_lengths: tuple[int, ...] = (900, 5400, 1800, 64), dtype: torch.dtype = torch.float16,
    device: str = "cuda", seed: int = 0,
) -> tuple[Tensor, ...]:
    """Random inputs shaped like the folded DAMI read at 480 px (30x30 queries, 256-d keys,
    64-d values; banks: anchor 1 slot, short-term 6, prototypes 2, pointers); ~20 % of the
    keys invalid. Returns (q, k, v, key_valid, key_bias, segment_weights)."""
    generator = torch.Generator().manual_seed(seed)
    keys = sum(segment_lengths)

    def normal(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=generator).to(device=device, dtype=dtype)

    valid = (torch.rand(batch, keys, generator=generator) > 0.2).to(device)
    bias = torch.randn(batch, keys, generator=generator).to(device)
    weights = torch.rand(len(segment_lengths), generator=generator).to(device)
    return normal(batch, heads, queries, head_dim), normal(batch, heads, keys, head_dim), \
        normal(batch, heads, keys, value_dim), valid, bias, weights


def _time_cuda_ms(fn, runs: int) -> dict[str, float]:
    """Median, p10, p90 and spread (p90 - p10) in ms of `runs` calls, each timed with CUDA events
    after 3 warm-up calls."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(runs):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    deciles = statistics.quantiles(times, n=10)
    return {"median_ms": statistics.median(times), "p10_ms": deciles[0], "p90_ms": deciles[-1],
            "spread_ms": deciles[-1] - deciles[0], "runs": runs}


def time_against_torch(runs: int = 50, dtype: torch.dtype = torch.float16, **shape: object) -> dict:
    """The Triton kernel against the torch version (`kernels/segmented_attention.py`) on CUDA, on
    `dami_inputs(**shape)`: ms per call for each, their ratio and the largest difference.
    Raises RuntimeError without a CUDA device."""
    from mqc_edge.kernels.segmented_attention import segmented_attention

    if not torch.cuda.is_available():
        raise RuntimeError("time_against_torch needs a CUDA device")
    inputs = dami_inputs(dtype=dtype, **shape)
    lengths = tuple(shape.get("segment_lengths", (900, 5400, 1800, 64)))
    fused = _time_cuda_ms(lambda: segmented_attention_triton(*inputs[:5], lengths, inputs[5]), runs)
    eager = _time_cuda_ms(lambda: segmented_attention(*inputs[:5], lengths, inputs[5]), runs)
    difference = (segmented_attention_triton(*inputs[:5], lengths, inputs[5]).float()
                  - segmented_attention(*inputs[:5], lengths, inputs[5]).float()).abs().max().item()
    return {"dtype": str(dtype).removeprefix("torch."), "device": torch.cuda.get_device_name(),
            "triton": fused, "torch": eager, "speedup": eager["median_ms"] / fused["median_ms"],
            "max_abs_difference": difference}


if __name__ == "__main__":  # python -m mqc_edge.kernels.triton_segmented_attention [runs]: JSON on stdout
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    print(json.dumps({name: time_against_torch(count, dtype) for name, dtype in
                      (("fp16", torch.float16), ("fp32", torch.float32))}, indent=2))
