"""Device projection: roofline floors from a graph with known FLOPs and bytes, hand-checked, and
device names that fail in one line."""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from mqc_edge.benchmarks.cost_model import GraphCost, graph_cost
from mqc_edge.benchmarks.projection import PROFILES, DeviceProfile, device_profile, floor_ms, main, project
from mqc_edge.errors import ConfigError


def _matmul_relu(rows: int) -> GraphCost:
    """x [rows, 64] @ w [64, 64] (an initializer) -> Relu -> y: 2*rows*64*64 contraction FLOPs,
    rows*64 element-wise, (rows*64 + 64*64 + rows*64) * 4 minimal bytes."""
    weight = numpy_helper.from_array(np.zeros((64, 64), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["c"]), helper.make_node("Relu", ["c"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [rows, 64])], [weight])
    return graph_cost(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


def test_the_synthetic_graph_has_the_counts_the_floors_below_use():
    cost = _matmul_relu(64)
    assert (cost.flops_compute, cost.flops_elementwise, cost.bytes_min) == (524_288, 4_096, 49_152)


def test_a_small_graph_is_bandwidth_bound_on_both_jetsons_at_every_precision():
    cost = _matmul_relu(64)  # 49,152 bytes at FP32: the floor is bytes / bandwidth
    assert floor_ms(cost, device_profile("jetson-agx-orin"), "fp32") == pytest.approx(49_152 / 204.8e9 * 1e3)
    assert floor_ms(cost, device_profile("jetson-agx-orin"), "fp16") == pytest.approx(24_576 / 204.8e9 * 1e3)
    assert floor_ms(cost, device_profile("jetson-orin-nx"), "int8") == pytest.approx(12_288 / 102.4e9 * 1e3)


def test_a_compute_bound_floor_adds_tensor_and_cuda_core_time():
    """Huge bandwidth: floor = contraction FLOPs / the precision's peak + element-wise / FP32 peak."""
    device = DeviceProfile("paper", fp32_tflops=1.0, fp16_tflops=4.0, int8_tops=8.0, bandwidth_gbps=1e9, source="test")
    cost = _matmul_relu(1024)  # 134,217,728 contraction FLOPs, 65,536 element-wise
    assert floor_ms(cost, device, "fp32") == pytest.approx((8_388_608 + 65_536) / 1e12 * 1e3)
    assert floor_ms(cost, device, "fp16") == pytest.approx((8_388_608 / 4e12 + 65_536 / 1e12) * 1e3)
    assert floor_ms(cost, device, "int8") == pytest.approx((8_388_608 / 8e12 + 65_536 / 1e12) * 1e3)


def test_profiles_follow_the_data_sheet_arithmetic():
    agx, nx = PROFILES["jetson-agx-orin"], PROFILES["jetson-orin-nx"]
    assert agx.int8_tops == pytest.approx(171 / 2, rel=1e-3)  # 171 sparse INT8 TOPS on the GPU, dense half
    assert agx.fp16_tflops == pytest.approx(agx.int8_tops / 2)
    assert agx.fp32_tflops == pytest.approx(5.3248)  # 2048 cores x 2 x 1.3 GHz
    assert 2 * nx.int8_tops + 40 == pytest.approx(100, abs=0.5)  # GPU sparse + 2 DLAs = the NX 16GB's 100 TOPS
    assert (agx.bandwidth_gbps, nx.bandwidth_gbps) == (204.8, 102.4)


def test_frame_floor_uses_dami_instead_of_memory_attention_when_both_exist():
    cost = _matmul_relu(64)
    row = project({"image_encoder": cost, "memory_attention": cost, "dami_attention": cost}, ["jetson-agx-orin"])
    fp32 = row["jetson-agx-orin"]["fp32"]
    assert fp32["frame"] == pytest.approx(2 * fp32["image_encoder"])
    assert fp32["fps"] == pytest.approx(1e3 / fp32["frame"])


def test_unknown_device_or_precision_fails_in_one_line(capsys):
    with pytest.raises(ConfigError, match="device 'jetson-nano': no profile; known: jetson-agx-orin, jetson-orin-nx"):
        device_profile("jetson-nano")
    with pytest.raises(ConfigError, match="precision 'fp8'"):
        PROFILES["jetson-agx-orin"].contraction_peak_flops("fp8")
    assert main(["some_export", "--devices", "jetson-agx-orin,jetson-nano"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: device 'jetson-nano'")
