"""The device's achievable MatMul peaks, measured in the same run as the benchmark they scale.

A datasheet peak is not what a CPU reaches under its power and thread limits; a large
MatMul in onnxruntime (the backend under test) is, so every "fraction of peak" in a report is
relative to a number taken minutes earlier on the same machine with the same threads. Two
kernels: the FP32 MatMul (the floor of FP32 and FP16-on-CPU stages) and the u8s8
MatMulInteger (u8 activations x s8 weights, int32 accumulation: what an INT8 QDQ stage's
MatMul/Gemm/Conv run on MLAS), the floor of INT8 stages.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper


@dataclass(frozen=True)
class PeakMeasurement:
    gflops_median: float  # GFLOP/s (FP32) or GOP/s (u8s8); a multiply-add is 2
    gflops_best: float
    size: int
    threads: int
    repeats: int


def _session(node: str, a_type: int, b_type: int, c_type: int, size: int, threads: int) -> ort.InferenceSession:
    """A size x size by size x size `node` (MatMul or MatMulInteger) graph on the CPU provider."""
    graph = helper.make_graph(
        [helper.make_node(node, ["a", "b"], ["c"])],
        f"peak_{node.lower()}",
        [helper.make_tensor_value_info("a", a_type, [size, size]), helper.make_tensor_value_info("b", b_type, [size, size])],
        [helper.make_tensor_value_info("c", c_type, [size, size])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _timed(session: ort.InferenceSession, feeds: dict[str, np.ndarray], size: int, threads: int,
           repeats: int) -> PeakMeasurement:
    """2 size^3 operations per run over `repeats` runs (one warm-up run excluded)."""
    session.run(None, feeds)
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        session.run(None, feeds)
        rates.append(2 * size**3 / (time.perf_counter() - started) / 1e9)
    return PeakMeasurement(float(np.median(rates)), float(max(rates)), size, threads, repeats)


def measure_matmul_peak(size: int = 2048, threads: int = 2, repeats: int = 10) -> PeakMeasurement:
    """GFLOP/s of a size x size FP32 MatMul in onnxruntime."""
    session = _session("MatMul", TensorProto.FLOAT, TensorProto.FLOAT, TensorProto.FLOAT, size, threads)
    rng = np.random.default_rng(0)
    feeds = {name: rng.standard_normal((size, size), dtype=np.float32) for name in ("a", "b")}
    return _timed(session, feeds, size, threads, repeats)


def measure_u8s8_peak(size: int = 2048, threads: int = 2, repeats: int = 10) -> PeakMeasurement:
    """GOP/s of a size x size MatMulInteger, uint8 A x int8 B -> int32, in onnxruntime."""
    session = _session("MatMulInteger", TensorProto.UINT8, TensorProto.INT8, TensorProto.INT32, size, threads)
    rng = np.random.default_rng(0)
    feeds = {"a": rng.integers(0, 256, (size, size), dtype=np.uint8),
             "b": rng.integers(-128, 128, (size, size), dtype=np.int8)}
    return _timed(session, feeds, size, threads, repeats)
