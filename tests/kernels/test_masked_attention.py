"""The key-masked attention of every memory read: the same weights as torch's boolean-mask SDPA
on every query with a valid key, 0 for a query whose keys are all masked, in eager torch and in
the exported graph alike, and no pass over the score matrix beyond the bias add."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F

from mqc_edge.kernels.masked_attention import masked_attention


class _Read(torch.nn.Module):
    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_valid: torch.Tensor) -> torch.Tensor:
        return masked_attention(q, k, v, key_valid)


def _inputs(seed: int = 0) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(2, 1, n, d, generator=generator) for n, d in ((12, 32), (40, 32), (40, 16)))
    key_valid = torch.ones(2, 1, 1, 40, dtype=torch.bool)
    key_valid[0, ..., 10:25] = False  # object 0: a slot left empty
    key_valid[1] = False  # object 1: nothing to read
    return q, k, v, key_valid


def test_equals_boolean_mask_attention_and_reads_zero_without_keys() -> None:
    q, k, v, key_valid = _inputs()
    out = masked_attention(q, k, v, key_valid)
    expected = F.scaled_dot_product_attention(q[:1], k[:1], v[:1], attn_mask=key_valid[:1])
    assert torch.equal(out[:1], expected)
    assert torch.equal(out[1], torch.zeros_like(out[1]))


def test_exported_graph_matches_eager_and_has_no_score_matrix_nan_guard(tmp_path) -> None:
    q, k, v, key_valid = _inputs(1)
    path = tmp_path / "read.onnx"
    torch.onnx.export(_Read(), (q, k, v, key_valid), str(path), dynamo=True, opset_version=18,
                      input_names=["q", "k", "v", "key_valid"])
    ops = [node.op_type for node in onnx.load(str(path)).graph.node]
    assert "IsNaN" not in ops and ops.count("Softmax") == 1
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"q": q.numpy(), "k": k.numpy(), "v": v.numpy(), "key_valid": key_valid.numpy()})[0]
    eager = masked_attention(q, k, v, key_valid).numpy()
    assert np.abs(got - eager).max() <= 1e-6 and np.array_equal(got[1], np.zeros_like(got[1]))
