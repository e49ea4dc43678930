"""The export's GELU: the same function as `nn.GELU()`, one fused kernel in onnxruntime where
torch's own export of `nn.GELU()` stays five element-wise ops, and swapped back after export."""

from __future__ import annotations

import math

import onnx
import onnxruntime as ort
import torch
from torch import nn

from mqc_edge.kernels.gelu import FusableGelu, fusable_gelus


def _optimized_ops(module: nn.Module, tmp_path, name: str) -> list[str]:
    """Op types of the graph onnxruntime runs after its own optimizations."""
    exported, optimized = tmp_path / f"{name}.onnx", tmp_path / f"{name}-optimized.onnx"
    torch.onnx.export(module, (torch.randn(4, 64),), str(exported), dynamo=True, opset_version=18)
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(optimized)
    ort.InferenceSession(str(exported), options, providers=["CPUExecutionProvider"])
    return [node.op_type for node in onnx.load(str(optimized)).graph.node]


def test_same_numbers_as_the_exporter_s_order_and_torch_s_gelu() -> None:
    x = torch.linspace(-8, 8, 10001)
    exporter_order = x * ((1.0 + torch.erf(x / math.sqrt(2.0))) * 0.5)  # Div, Erf, Add, Mul(0.5), Mul(x)
    assert torch.equal(FusableGelu()(x), exporter_order)
    # 1 + erf cancels for x << 0 in both orders: absolute error at float32's resolution of 1
    assert torch.allclose(FusableGelu()(x), nn.GELU()(x), rtol=1e-6, atol=2e-6)


def test_onnxruntime_fuses_it_and_not_torch_s_export_of_nn_gelu(tmp_path) -> None:
    fused = _optimized_ops(nn.Sequential(nn.Linear(64, 64), FusableGelu()), tmp_path, "fusable")
    plain = _optimized_ops(nn.Sequential(nn.Linear(64, 64), nn.GELU()), tmp_path, "plain")
    assert "Gelu" in fused and "Erf" not in fused
    assert "Erf" in plain and "Gelu" not in plain


def test_swapped_inside_the_block_and_put_back() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.GELU(), nn.Sequential(nn.GELU(approximate="tanh"), nn.GELU()))
    originals = [model[1], model[2][1]]
    with fusable_gelus(model) as count:
        assert count == 2 and isinstance(model[1], FusableGelu) and isinstance(model[2][1], FusableGelu)
        assert isinstance(model[2][0], nn.GELU)  # the tanh approximation is another function: left alone
    assert [model[1], model[2][1]] == originals
