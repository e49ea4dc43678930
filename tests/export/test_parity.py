"""The parity checks themselves catch what they must, and ORT's bfloat16 Cast rounds like torch."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import torch
from onnx import TensorProto, helper

from mqc_edge.export.parity import ParityThresholds, compare_outputs, tracker_parity
from mqc_edge.runtime.results import FrameResult

THRESHOLDS = ParityThresholds()
RNG = np.random.default_rng(0)


def test_a_float_output_off_by_a_tenth_of_a_percent_fails() -> None:
    reference = RNG.standard_normal((4, 8)).astype(np.float32)
    assert compare_outputs(reference, reference + 1e-7, THRESHOLDS)["passed"]
    off = reference.copy()
    off[2, 3] += 1e-3 * np.abs(reference).max()
    assert not compare_outputs(reference, off, THRESHOLDS)["passed"]
    assert not compare_outputs(reference, np.full_like(reference, np.nan), THRESHOLDS)["passed"]


def test_bfloat16_outputs_may_differ_by_one_ulp_not_two() -> None:
    reference = torch.randn(1000).to(torch.bfloat16)
    one_ulp = torch.nextafter(reference, torch.full_like(reference, torch.inf))
    two_ulps = torch.nextafter(one_ulp, torch.full_like(one_ulp, torch.inf))
    as_float = [t.float().numpy() for t in (reference, one_ulp, two_ulps)]
    report = compare_outputs(as_float[0], as_float[1], THRESHOLDS)
    assert report["bfloat16"] and report["passed"]
    assert not compare_outputs(as_float[0], as_float[2], THRESHOLDS)["passed"]


def test_integer_outputs_must_be_equal() -> None:
    mask = RNG.integers(0, 2, (1, 16)).astype(bool)
    assert compare_outputs(mask, mask.copy(), THRESHOLDS)["passed"]
    assert compare_outputs(mask, ~mask, THRESHOLDS)["mismatches"] == 16


def _result(logits: np.ndarray) -> FrameResult:
    return FrameResult(frame_index=0, logits=logits, mask=logits > 0, logits_lowres=logits, object_score=1.0, iou=1.0)


def test_tracker_parity_flags_a_frame_whose_logits_drift() -> None:
    frames = [RNG.standard_normal((20, 20)).astype(np.float32) for _ in range(24)]
    same = tracker_parity([_result(f) for f in frames], [_result(f + 1e-6) for f in frames], THRESHOLDS)
    assert same["passed"] and same["frames"] == 24 and same["mask_iou_min"] >= 0.99
    drifted = [f.copy() for f in frames]
    drifted[5] += 0.01 * np.abs(frames[5]).max()
    report = tracker_parity([_result(f) for f in frames], [_result(f) for f in drifted], THRESHOLDS)
    assert not report["passed"] and report["max_frame_logit_relative"] > 1e-3


def test_onnxruntime_cpu_bfloat16_cast_equals_torch_bit_for_bit() -> None:
    """memory_encoder rounds through bfloat16 in the graph (Cast, Cast); ORT CPU must round to
    nearest even as torch does, ties and extremes included."""
    nodes = [helper.make_node("Cast", ["x"], ["b"], to=TensorProto.BFLOAT16),
             helper.make_node("Cast", ["b"], ["y"], to=TensorProto.FLOAT)]
    graph = helper.make_graph(nodes, "bf16", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    spread = (RNG.standard_normal(100_000) * np.exp(RNG.uniform(-30, 30, 100_000))).astype(np.float32)
    ties = ((RNG.integers(0, 2**32, 100_000, dtype=np.uint64).astype(np.uint32) & 0xFFFF0000) | 0x8000).view(np.float32)
    extremes = np.array([0.0, -0.0, 1e-45, -1e-45, 3.4e38, -3.4e38, np.inf, -np.inf], np.float32)
    x = np.concatenate([spread, ties[np.isfinite(ties)], extremes])
    (got,) = session.run(None, {"x": x})
    want = torch.from_numpy(x).to(torch.bfloat16).float().numpy()
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))
