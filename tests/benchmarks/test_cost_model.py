"""Cost model: FLOPs and bytes read from ONNX graphs, checked against hand counts."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from mqc_edge.benchmarks.cost_model import graph_cost
from mqc_edge.benchmarks.peak import measure_matmul_peak


def _model(nodes, inputs, outputs, initializers=(), opset=17):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _value(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def test_conv_matmul_and_elementwise_hand_count():
    weight = numpy_helper.from_array(np.zeros((8, 3, 3, 3), np.float32), "w")  # Cout 8, Cin 3, 3x3
    proj = numpy_helper.from_array(np.zeros((16, 5), np.float32), "p")
    model = _model(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),  # [1, 8, 16, 16]
            helper.make_node("Relu", ["c"], ["r"]),
            helper.make_node("MatMul", ["r", "p"], ["y"]),  # [1, 8, 16, 5]
        ],
        [_value("x", [1, 3, 16, 16])],
        [_value("y", [1, 8, 16, 5])],
        [weight, proj],
    )
    cost = graph_cost(model)
    conv = 2 * (8 * 16 * 16) * (3 * 3 * 3)  # 2 * output elements * (Cin * kh * kw) = 110592
    matmul = 2 * (8 * 16 * 5) * 16  # 2 * output elements * K = 20480
    assert cost.flops_by_op == {"Conv": conv, "Relu": 8 * 16 * 16, "MatMul": matmul}
    assert cost.flops_compute == conv + matmul and cost.flops_elementwise == 2048
    weights, io = (8 * 27 + 16 * 5) * 4, (3 * 256 + 8 * 16 * 5) * 4
    assert cost.bytes_min == weights + io
    assert cost.bytes_touched == (3 * 256 + 8 * 27 + 2048) * 4 + (2048 * 2) * 4 + (2048 + 80 + 640) * 4


def test_attention_counted_the_same_as_its_matmuls():
    """One attention layer two ways: decomposed MatMuls vs the fused opset-23 Attention op."""
    batch, heads, lq, lk, d = 1, 2, 10, 7, 4
    q, k, v = _value("q", [batch, heads, lq, d]), _value("k", [batch, heads, lk, d]), _value("v", [batch, heads, lk, d])
    decomposed = _model(
        [
            helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2]),
            helper.make_node("MatMul", ["q", "kt"], ["s"]),
            helper.make_node("Softmax", ["s"], ["a"], axis=-1),
            helper.make_node("MatMul", ["a", "v"], ["o"]),
        ],
        [q, k, v],
        [_value("o", [batch, heads, lq, d])],
    )
    fused = _model([helper.make_node("Attention", ["q", "k", "v"], ["o"])], [q, k, v],
                   [_value("o", [batch, heads, lq, d])], opset=23)
    hand = 2 * 2 * batch * heads * lq * lk * d  # QK^T and PV, 2 FLOPs per multiply-add = 2240
    assert graph_cost(decomposed).flops_compute == hand
    assert graph_cost(fused).flops_compute == hand


def test_floor_is_the_slower_of_compute_and_bandwidth():
    model = _model([helper.make_node("MatMul", ["a", "b"], ["c"])], [_value("a", [64, 64]), _value("b", [64, 64])],
                   [_value("c", [64, 64])])
    cost = graph_cost(model)
    assert cost.floor_ms(peak_gflops=1.0, bandwidth_gbps=1e6) == pytest.approx(2 * 64**3 / 1e9 * 1e3)
    assert cost.floor_ms(peak_gflops=1e6, bandwidth_gbps=1.0) == pytest.approx(3 * 64 * 64 * 4 / 1e9 * 1e3)


def test_symbolic_dims_are_pinned_or_reported_unknown():
    model = _model([helper.make_node("Relu", ["x"], ["y"])], [_value("x", ["prompt_tokens", 4])],
                   [_value("y", ["prompt_tokens", 4])])
    assert graph_cost(model).unknown_shapes == ("x", "y")
    assert graph_cost(model, {"prompt_tokens": 3}).flops_elementwise == 12


def test_matmul_peak_is_positive_and_consistent():
    peak = measure_matmul_peak(size=256, threads=1, repeats=3)
    assert 0 < peak.gflops_median <= peak.gflops_best


def test_every_exported_stage_is_fully_counted_and_per_object_stages_scale_with_objects(exported):
    from mqc_edge.runtime.manifest import load_manifest

    manifest = load_manifest(exported[0])
    for stage in manifest.content["stages"]:
        cost = graph_cost(manifest.stage_file(stage), {"prompt_tokens": 2, "objects": 1})
        assert cost.unknown_shapes == (), stage
    one, four = (graph_cost(manifest.stage_file("memory_attention"), {"prompt_tokens": 2, "objects": count}).flops
                 for count in (1, 4))
    assert one > 0 and four == pytest.approx(4 * one, rel=1e-3)


def test_an_int8_stage_is_costed_against_the_u8s8_peak_and_others_against_fp32():
    from mqc_edge.benchmarks.cost_model import stage_cost, stage_efficiency

    model = _model([helper.make_node("MatMul", ["a", "b"], ["c"])], [_value("a", [64, 64]), _value("b", [64, 64])],
                   [_value("c", [64, 64])])
    peaks = {"fp32": 10.0, "u8s8": 40.0}
    gop = 2 * 64**3 / 1e9  # 0.000524288
    int8, fp32 = (stage_cost(model, precision, peaks, bandwidth_gbps=1e6) for precision in ("int8", "fp32"))
    assert int8["peak"] == "u8s8" and int8["peak_gops"] == 40.0 and int8["floor_ms"] == pytest.approx(gop / 40.0 * 1e3)
    assert fp32["peak"] == "fp32" and fp32["floor_ms"] == pytest.approx(gop / 10.0 * 1e3)
    efficiency = stage_efficiency(int8, ms=0.0524288)  # 0.000524288 GOP in 52.4288 us: 10 GOP/s
    assert efficiency["achieved_compute_gops"] == pytest.approx(10.0)
    assert efficiency["fraction_of_peak"] == pytest.approx(0.25) and efficiency["peak"] == "u8s8"
    assert efficiency["fraction_of_floor"] == pytest.approx(0.25)


def test_u8s8_peak_is_positive_and_consistent():
    from mqc_edge.benchmarks.peak import measure_u8s8_peak

    peak = measure_u8s8_peak(size=256, threads=1, repeats=3)
    assert 0 < peak.gflops_median <= peak.gflops_best and peak.size == 256


def test_a_dynamically_quantized_matmul_counts_as_its_float_matmul_against_the_u8s8_peak():
    """onnxruntime's quantize_dynamic turns MatMul into DynamicQuantizeLinear + MatMulInteger."""
    from mqc_edge.benchmarks.cost_model import stage_cost

    weight = numpy_helper.from_array(np.zeros((16, 5), np.int8), "w")
    zero = numpy_helper.from_array(np.zeros((), np.int8), "w_zero")
    model = _model(
        [
            helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
            helper.make_node("MatMulInteger", ["xq", "w", "xz", "w_zero"], ["y"]),
        ],
        [_value("x", [8, 16])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [8, 5])],
        [weight, zero],
    )
    cost = stage_cost(model, "int8-dynamic", {"fp32": 10.0, "u8s8": 40.0}, bandwidth_gbps=1e6)
    assert graph_cost(model).flops_by_op["MatMulInteger"] == 2 * 8 * 5 * 16
    assert cost["peak"] == "u8s8"
