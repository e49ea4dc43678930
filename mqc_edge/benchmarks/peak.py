"""The device's achievable FP32 peak, measured in the same run as the benchmark it scales.

A datasheet peak is not what a CPU reaches under its power and thread limits; a large
MatMul in onnxruntime (the backend under test) is, so every "fraction of peak" in a report is
relative to a number taken minutes earlier on the same machine with the same threads.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper


@dataclass(frozen=True)
class PeakMeasurement:
    gflops_median: float
    gflops_best: float
    size: int
    threads: int
    repeats: int


def _matmul_session(size: int, threads: int) -> ort.InferenceSession:
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])],
        "peak_matmul",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [size, size]) for name in ("a", "b")],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [size, size])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def measure_matmul_peak(size: int = 2048, threads: int = 2, repeats: int = 10) -> PeakMeasurement:
    """GFLOP/s of a size x size FP32 MatMul in onnxruntime (one warm-up run excluded)."""
    session = _matmul_session(size, threads)
    rng = np.random.default_rng(0)
    feeds = {name: rng.standard_normal((size, size), dtype=np.float32) for name in ("a", "b")}
    session.run(None, feeds)
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        session.run(None, feeds)
        rates.append(2 * size**3 / (time.perf_counter() - started) / 1e9)
    return PeakMeasurement(float(np.median(rates)), float(max(rates)), size, threads, repeats)
