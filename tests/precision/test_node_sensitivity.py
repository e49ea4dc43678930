"""Node sensitivity inside a stage: the ranking finds the node that INT8 hurts, excluded nodes stay
FP32 under onnxruntime's Gemm rewrite, the search tries 1, 2, 4, ... and a mixed build whose
combination is outside the gate sends its costliest stage back to FP32."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from mqc_edge.calibration.clips import CALIBRATION_SEED, ClipSet
from mqc_edge.precision import build, gate_summary
from mqc_edge.precision.build import BuildConfig, build_precision
from mqc_edge.precision.node_sensitivity import (NodeSensitivity, exclusion_sizes, output_error, parameters_of, rank_nodes,
                                                smallest_passing_exclusion)
from mqc_edge.precision.plans import Int8Plan, weight_nodes, write_int8_dynamic
from mqc_edge.precision.gate import GateThresholds, PrecisionGateError

DYNAMIC = Int8Plan(scheme="dynamic")


def _two_branch_graph(path: Path) -> Path:
    """y_plain = x @ W_plain, y_outlier = x @ W_outlier: W_outlier's columns each hold one value 1000x
    the rest (on an input the feeds keep at 0), so its per-channel INT8 scale rounds the weights
    that matter to 0."""
    rng = np.random.default_rng(0)
    plain = rng.normal(size=(16, 8)).astype(np.float32)
    outlier = rng.normal(size=(16, 8)).astype(np.float32)
    outlier[0] = 1000.0
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "model.plain.weight"], ["y_plain"], name="plain"),
         helper.make_node("MatMul", ["x", "model.outlier.weight"], ["y_outlier"], name="outlier")],
        "two_branches", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 16])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [4, 8]) for name in ("y_plain", "y_outlier")],
        [numpy_helper.from_array(plain, "model.plain.weight"), numpy_helper.from_array(outlier, "model.outlier.weight")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_ranking_puts_the_node_int8_hurts_first_and_names_its_module(tmp_path):
    graph = _two_branch_graph(tmp_path / "two.onnx")
    feeds = [{"x": np.random.default_rng(seed).normal(size=(4, 16)).astype(np.float32)} for seed in (1, 2)]
    for call in feeds:
        call["x"][:, 0] = 0.0
    ranking = rank_nodes(graph, feeds, DYNAMIC)
    assert [item.node for item in ranking] == ["outlier", "plain"]
    assert [item.parameter for item in ranking] == ["model.outlier", "model.plain"]
    assert ranking[0].relative_error > 0.5 > 10 * ranking[1].relative_error > 0


def test_a_node_whose_weight_lost_its_name_is_named_by_its_bias(tmp_path):
    weight = numpy_helper.from_array(np.ones((4, 4), np.float32), "val_7")  # a folded, transposed Linear weight
    bias = numpy_helper.from_array(np.zeros(4, np.float32), "model.decoder.q_proj.bias")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "val_7"], ["h"], name="q"),
         helper.make_node("Add", ["h", "model.decoder.q_proj.bias"], ["y"], name="q_bias"),
         helper.make_node("MatMul", ["y", "val_7"], ["z"], name="unnamed")],
        "folded", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 4])], [weight, bias])
    path = tmp_path / "folded.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    assert parameters_of(path) == {"q": "model.decoder.q_proj", "q_bias": "model.decoder.q_proj"}


def test_output_error_is_the_worst_relative_error_and_skips_zero_outputs():
    reference = [[np.ones(4, np.float32), np.zeros(2, np.float32)], [np.full(4, 2.0, np.float32), np.ones(2, np.float32)]]
    outputs = [[np.full(4, 1.1, np.float32), np.ones(2, np.float32)], [np.full(4, 2.0, np.float32), np.ones(2, np.float32)]]
    assert output_error(reference, outputs) == pytest.approx(0.1, rel=1e-5)


def test_excluded_gemm_nodes_stay_fp32_through_onnxruntimes_gemm_rewrite(exported, tmp_path):
    source = exported[0] / "image_encoder.onnx"
    nodes = weight_nodes(source, DYNAMIC)
    gemms = {node.name for node in onnx.load(str(source)).graph.node if node.op_type == "Gemm"}
    excluded = tuple(name for name in nodes if name in gemms)[:2]
    assert len(excluded) == 2 and set(parameters_of(source)) >= set(nodes)
    counts = []
    for plan in (DYNAMIC, Int8Plan(scheme="dynamic", excluded_nodes=excluded)):
        write_int8_dynamic(source, tmp_path / "q.onnx", plan)
        counts.append(sum(node.op_type == "MatMulInteger" for node in onnx.load(str(tmp_path / "q.onnx")).graph.node))
    assert counts[0] == len(nodes) and counts[1] == len(nodes) - 2


def test_exclusion_sizes_double_up_to_half_the_nodes():
    assert exclusion_sizes(27) == [1, 2, 4, 8, 13]
    assert exclusion_sizes(16) == [1, 2, 4, 8]
    assert exclusion_sizes(3) == [1]
    assert exclusion_sizes(1) == []


def test_search_returns_the_first_passing_prefix_or_none():
    ranking = [NodeSensitivity(f"n{i}", f"model.m{i}", 1.0 / (i + 1)) for i in range(20)]
    tried = []

    def passes_from_three(excluded):
        tried.append(len(excluded))
        return len(excluded) >= 3

    assert smallest_passing_exclusion(ranking, passes_from_three) == ("n0", "n1", "n2", "n3")
    assert tried == [1, 2, 4]
    assert smallest_passing_exclusion(ranking, lambda excluded: False) is None


def test_a_mixed_build_records_every_node_search_try_and_keeps_a_stage_fp32_when_none_passes(exported, tmp_path):
    out = tmp_path / "mixed"
    impossible = GateThresholds(mask_iou_mean=1.0, mask_iou_min=1.0, jf_delta_points=-1.0)
    config = BuildConfig(exported[0], out, "mixed", stages=("mask_decoder",), int8=DYNAMIC, node_search=True,
                         calibration=ClipSet(clips=1, frames=3, seed=CALIBRATION_SEED), gate_clips=ClipSet(clips=1, frames=3),
                         gate=impossible, threads=1)
    with pytest.raises(PrecisionGateError):
        build_precision(config)
    report = json.loads((out / "build_report.json").read_text())
    search = report["node_search"]["mask_decoder"]
    assert search["excluded_nodes"] is None and report["stages"]["mask_decoder"] == "fp32"
    assert [len(t["excluded"]) for t in search["tries"]] == exclusion_sizes(len(search["ranking"]))
    assert report["calibration"]["used_for"] == "ranking nodes by INT8 sensitivity"
    assert "Node sensitivity, mask_decoder: stays FP32" in (out / "build_report.md").read_text()


def test_the_combination_drops_the_stage_that_costs_most_iou_per_ms_saved(monkeypatch, tmp_path):
    alone = {  # harm in sam2 mode / ms saved: a 0.01 / 10 ms, b 0.01 / 1 ms, c 0 / 5 ms
        "a": {"modes": {"sam2": {"mask_iou_mean": 0.99}}, "stage_ms": 10.0},
        "b": {"modes": {"sam2": {"mask_iou_mean": 0.99}}, "stage_ms": 4.0},
        "c": {"modes": {"sam2": {"mask_iou_mean": 1.0}}, "stage_ms": 5.0},
    }
    plan = build._Plan(graphs={name: (tmp_path / name, "int8-dynamic") for name in alone})
    gated = []

    def fake_gate(config, source, plan, judged, target):
        gated.append(sorted(plan.graphs))
        passed = "b" not in plan.graphs
        return target, {}, {"passed": passed, "modes": {"sam2": {"passed": passed, "mask_iou_mean": 0.97}}}

    monkeypatch.setattr(build, "_stage_and_gate", fake_gate)
    monkeypatch.setattr(build, "stage_ms", lambda runs: {"a": 20.0, "b": 5.0, "c": 10.0})
    _, _, verdict, dropped = build._fit_combination(None, None, plan, alone, ({}, [], None), tmp_path)
    assert verdict["passed"] and [d["stage"] for d in dropped] == ["b"]
    assert gated == [["a", "b", "c"], ["a", "c"]] and sorted(plan.graphs) == ["a", "c"]


def test_gate_summary_labels_fp32_nodes_and_stages_the_combination_dropped():
    mode = {"frames": 4, "mask_iou_mean": 0.99, "mask_iou_min": 0.9, "max_logit_abs": 1.0, "max_logit_relative": 0.1,
            "jf_reference": 0.5, "jf_candidate": 0.5, "jf_delta_points": 0.0, "passed": True}
    report = {"sensitivity": {"image_encoder": {"modes": {"sam2": mode}, "passed": True, "fp32_nodes": ["a", "b"]},
                              "mask_decoder": {"modes": {"sam2": mode}, "passed": True}},
              "dropped": [{"stage": "mask_decoder", "gate": {"modes": {}}}]}
    rows = gate_summary.sensitivity_rows("b1", report)
    assert rows[0].startswith("| b1 | image_encoder (within, 2 nodes FP32) | sam2 |")
    assert rows[1].startswith("| b1 | mask_decoder (within, FP32 in the combination) | sam2 |")
