"""The export-friendly DAMI attention (which model/dami.py runs) equals the numpy reference, an
empty slot contributes exactly nothing, and its graph runs in onnxruntime."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from mqc_edge.kernels.segmented_attention import segmented_attention, segmented_attention_reference

LENGTHS = (5, 12, 0, 7)  # includes a bank with no slots at all
TOLERANCE = 1e-5  # float32 kernel vs float64 reference; logits are O(10)


def _inputs(seed: int) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    keys = sum(LENGTHS)
    q = torch.randn(2, 2, 6, 16, generator=generator)
    k = 2 * torch.randn(2, 2, keys, 16, generator=generator)
    v = torch.randn(2, 2, keys, 16, generator=generator)
    valid = torch.rand(2, keys, generator=generator) > 0.3
    valid[1, 17:] = False  # batch 1: the last bank is empty
    bias = torch.randn(2, keys, generator=generator)
    weights = torch.tensor([1.0, 0.5, 2.0, 1.5])
    return q, k, v, valid, bias, weights


def _reference(q, k, v, valid, bias, weights) -> np.ndarray:
    return segmented_attention_reference(q.numpy(), k.numpy(), v.numpy(), valid.numpy(), bias.numpy(), LENGTHS,
                                         weights.numpy())


def test_kernel_equals_the_reference_that_drops_invalid_keys() -> None:
    q, k, v, valid, bias, weights = _inputs(0)
    got = segmented_attention(q, k, v, valid, bias, LENGTHS, weights)
    assert np.abs(got.numpy() - _reference(q, k, v, valid, bias, weights)).max() <= TOLERANCE


def test_banks_far_apart_in_logit_do_not_underflow() -> None:
    """A bank trailing another by 200 in logit still reads its own softmax (per-bank max)."""
    q, k, v, valid, bias, weights = _inputs(4)
    bias[:, :5] += 200.0
    got = segmented_attention(q, k, v, valid, bias, LENGTHS, weights)
    assert torch.isfinite(got).all()
    assert np.abs(got.numpy() - _reference(q, k, v, valid, bias, weights)).max() <= TOLERANCE


def test_invalid_slots_contribute_exactly_nothing_even_as_nan() -> None:
    q, k, v, valid, bias, weights = _inputs(1)
    clean = segmented_attention(q, k, v, valid, bias, LENGTHS, weights)
    poisoned = [torch.where(valid[:, None, :, None], t, torch.full_like(t, torch.nan)) for t in (k, v)]
    bias = torch.where(valid, bias, torch.full_like(bias, torch.inf))
    dirty = segmented_attention(*[q, *poisoned], valid, bias, LENGTHS, weights)
    assert torch.equal(clean, dirty)


def test_a_bank_without_valid_keys_reads_zero() -> None:
    q, k, v, valid, bias, weights = _inputs(2)
    valid[:] = False
    assert torch.equal(segmented_attention(q, k, v, valid, bias, LENGTHS, weights), torch.zeros_like(q))


class _Kernel(nn.Module):
    def forward(self, q, k, v, valid, bias, weights):
        return segmented_attention(q, k, v, valid, bias, LENGTHS, weights)


def test_exported_kernel_runs_in_onnxruntime_with_nan_in_empty_slots(tmp_path) -> None:
    q, k, v, valid, bias, weights = _inputs(3)
    path = tmp_path / "dami.onnx"
    torch.onnx.export(_Kernel().eval(), (q, k, v, valid, bias, weights), path, dynamo=True, opset_version=18)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = dict(zip([i.name for i in session.get_inputs()], (t.numpy() for t in (q, k, v, valid, bias, weights))))
    feed[session.get_inputs()[1].name] = np.where(valid.numpy()[:, None, :, None], k.numpy(), np.nan).astype(np.float32)
    (got,) = session.run(None, feed)
    assert np.abs(got - _reference(q, k, v, valid, bias, weights)).max() <= TOLERANCE
