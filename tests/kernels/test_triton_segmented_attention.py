"""The fused Triton DAMI kernel equals the numpy reference (each bank's own softmax over its
valid keys, an empty bank reading 0): on CPU under Triton's interpreter, and on CUDA.

The interpreter must be chosen before the kernel's module is imported (`triton.jit` reads
TRITON_INTERPRET when it decorates), so the CPU check runs this file as a script in a child
process with the variable set; the parent never imports the kernel for it. Triton is not a
dependency of mqc-edge: without it these tests skip.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from mqc_edge.kernels.segmented_attention import segmented_attention_reference

HAS_TRITON = importlib.util.find_spec("triton") is not None
needs_triton = pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed (not an mqc-edge dependency)")
TOLERANCE = {torch.float32: 1e-5, torch.float16: 2e-2}  # vs float64; fp16 inputs round q, k, v to 11 bits


def _case(seed: int, lengths: tuple[int, ...], queries: int, head_dim: int, value_dim: int) -> tuple:
    generator = torch.Generator().manual_seed(seed)
    keys = sum(lengths)
    q = torch.randn(2, 2, queries, head_dim, generator=generator)
    k = 2 * torch.randn(2, 2, keys, head_dim, generator=generator)
    v = torch.randn(2, 2, keys, value_dim, generator=generator)
    valid = torch.rand(2, keys, generator=generator) > 0.3
    bias = torch.randn(2, keys, generator=generator)
    weights = torch.linspace(0.5, 2.0, len(lengths))
    return q, k, v, valid, bias, lengths, weights


def cases() -> dict[str, tuple]:
    """name -> (q, k, v, key_valid, key_bias, segment_lengths, segment_weights), float32 CPU."""
    basic = _case(0, (5, 12, 0, 7), 6, 16, 16)  # a bank with no slots at all
    basic[3][1, 17:] = False  # batch 1: the last bank has no valid key
    far = _case(1, (5, 12, 0, 7), 6, 16, 16)
    far[4][:, :5] += 200.0  # a bank 200 ahead in logit: the others must not underflow
    ragged = _case(2, (40, 3, 70), 37, 20, 12)  # several key blocks per bank, dims not powers of 2
    empty = _case(3, (5, 12, 7), 6, 16, 16)
    empty[3][:] = False
    poisoned = _case(4, (5, 12, 0, 7), 6, 16, 16)
    q, k, v, valid, bias, lengths, weights = poisoned
    k, v = (torch.where(valid[:, None, :, None], t, torch.full_like(t, torch.nan)) for t in (k, v))
    bias = torch.where(valid, bias, torch.full_like(bias, torch.inf))
    return {"basic": basic, "banks_far_apart": far, "ragged_blocks": ragged, "all_invalid": empty,
            "nan_in_invalid_slots": (q, k, v, valid, bias, lengths, weights)}


def parity_errors(device: str, dtype: torch.dtype) -> dict[str, float]:
    """Largest |kernel - reference| per case, on `device` (CPU needs TRITON_INTERPRET=1 set first)."""
    from mqc_edge.kernels.triton_segmented_attention import segmented_attention_triton

    errors = {}
    for name, (q, k, v, valid, bias, lengths, weights) in cases().items():
        moved = [t.to(device=device, dtype=dtype) for t in (q, k, v)]
        got = segmented_attention_triton(*moved, valid.to(device), bias.to(device), lengths, weights.to(device),
                                         block_q=16, block_k=16)
        rounded = [t.to(dtype).double().numpy() for t in (q, k, v)]  # the reference sees the same inputs
        expected = segmented_attention_reference(*rounded, valid.numpy(), bias.numpy(), lengths, weights.numpy())
        errors[name] = float(np.abs(got.float().cpu().numpy() - expected).max())
    return errors


@needs_triton
def test_kernel_equals_reference_under_the_interpreter_on_cpu() -> None:
    env = {**os.environ, "TRITON_INTERPRET": "1", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, __file__], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    errors = json.loads(done.stdout.splitlines()[-1])
    assert set(errors) == set(cases())
    assert max(errors.values()) <= TOLERANCE[torch.float32], errors


@needs_triton
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_kernel_equals_reference_on_cuda(dtype: torch.dtype) -> None:
    errors = parity_errors("cuda", dtype)
    assert max(errors.values()) <= TOLERANCE[dtype], errors


HOPPER_SHARED_BYTES = 232_448  # the most shared memory one block may use on sm_90 (227 KB)


@needs_triton
@pytest.mark.slow
@pytest.mark.skipif(bool(os.environ.get("TRITON_INTERPRET")), reason="compiles the real kernel, not the interpreter's")
@pytest.mark.parametrize(("dtype", "block_k"), [("fp32", 32), ("fp16", 64)])
def test_kernel_compiles_for_hopper_within_its_shared_memory(dtype: str, block_k: int) -> None:
    """Ahead-of-time compile (no GPU needed) at the DAMI read's widths (d 256, dv 64) with the
    tiles the wrapper picks: a launch on the H200 cannot then fail for want of shared memory."""
    from triton import compile as triton_compile
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from mqc_edge.kernels.triton_segmented_attention import _segmented_attention_kernel

    pointers = {name: f"*{dtype}" for name in ("q_ptr", "k_ptr", "v_ptr")}
    pointers |= {"valid_ptr": "*i8", "bias_ptr": "*fp32", "bounds_ptr": "*i32", "weights_ptr": "*fp32",
                 "out_ptr": "*fp32"}
    scalars = {name: "i32" for name in ("heads", "queries", "keys", "head_dim", "value_dim", "segments")}
    constants = {"BLOCK_Q": 64, "BLOCK_K": block_k, "BLOCK_D": 256, "BLOCK_DV": 64, "IEEE_DOT": dtype == "fp32"}
    signature = pointers | scalars | {"scale": "fp32"} | dict.fromkeys(constants, "constexpr")
    source = ASTSource(fn=_segmented_attention_kernel, signature=signature,
                       constexprs={(list(signature).index(name),): value for name, value in constants.items()})
    compiled = triton_compile(source, target=GPUTarget("cuda", 90, 32))
    assert "cubin" in compiled.asm
    assert compiled.metadata.shared <= HOPPER_SHARED_BYTES


@needs_triton
def test_lengths_that_do_not_cover_the_keys_are_refused() -> None:
    from mqc_edge.kernels.triton_segmented_attention import segmented_attention_triton

    q, k, v, valid, bias, _, weights = cases()["basic"]
    with pytest.raises(ValueError, match="add up to 23, keys are 24"):
        segmented_attention_triton(q, k, v, valid, bias, (5, 11, 0, 7), weights)


if __name__ == "__main__":  # the child of the interpreter test: errors as one JSON line
    torch.set_num_threads(1)
    print(json.dumps(parity_errors("cpu", torch.float32)))
