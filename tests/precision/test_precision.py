"""`mqc-edge build`: FP16 islands, deterministic INT8 scales, the gate's refusal, per-stage
precision in the manifest, and the onnxruntime backend running the reduced exports."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from mqc_edge.calibration.clips import CALIBRATION_SEED, ClipSet, load_clips
from mqc_edge.calibration.reader import record_stage_feeds, track_prompted
from mqc_edge.precision import gate_summary
from mqc_edge.precision.build import BuildConfig, build_precision
from mqc_edge.errors import ConfigError
from mqc_edge.precision.plans import FP16_ISLANDS, Int8Plan, to_fp16, write_int8
from mqc_edge.precision.gate import GateThresholds, PrecisionGateError, tokenizer_of
from mqc_edge.runtime.manifest import load_manifest
from mqc_edge.runtime.backends.ort_backend import OrtBackend

CALIBRATION = ClipSet(clips=1, frames=3, seed=CALIBRATION_SEED)
GATE_CLIPS = ClipSet(clips=1, frames=4)
ANY_RESULT = GateThresholds(mask_iou_mean=0.0, mask_iou_min=0.0, jf_delta_points=100.0)
"""Random weights (logits about +-0.3) say nothing about precision loss: these tests check the
machinery; the gates are judged on the default model (docs/precision.md)."""


def _types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every typed value of the (shape-inferred) graph."""
    inferred = onnx.shape_inference.infer_shapes(model)
    values = [*inferred.graph.input, *inferred.graph.output, *inferred.graph.value_info]
    return {value.name: value.type.tensor_type.elem_type for value in values}


def test_fp16_keeps_islands_and_io_in_fp32(exported):
    model = to_fp16(onnx.load(str(exported[0] / "mask_decoder.onnx")))
    onnx.checker.check_model(model)
    types = _types(model)
    islands = [node for node in model.graph.node if node.op_type in FP16_ISLANDS]
    assert {node.op_type for node in islands} >= {"LayerNormalization", "Softmax"}
    for node in islands:
        assert all(types.get(name) != onnx.TensorProto.FLOAT16 for name in [*node.input, *node.output]), node.name
    assert all(types[v.name] == onnx.TensorProto.FLOAT for v in model.graph.output)
    halves = [node for node in model.graph.node if node.op_type in ("MatMul", "Conv")
              and types.get(node.output[0]) == onnx.TensorProto.FLOAT16]
    assert halves, "no MatMul/Conv runs in FP16"


def test_a_float_build_leaves_the_once_per_expression_text_encoder_fp32_unless_named(exported, tmp_path):
    from mqc_edge.precision.build import ONCE_PER_EXPRESSION

    report = build_precision(BuildConfig(exported[0], tmp_path / "fp16", "fp16", gate_clips=GATE_CLIPS, gate=ANY_RESULT,
                                         threads=1))
    assert ONCE_PER_EXPRESSION == ("text_encoder",) and report["stages"]["text_encoder"] == "fp32"
    assert {name for name, precision in report["stages"].items() if precision == "fp32"} == {"text_encoder"}
    named = build_precision(BuildConfig(exported[0], tmp_path / "fp16-text", "fp16", stages=("text_encoder",),
                                        gate_clips=GATE_CLIPS, gate=ANY_RESULT, threads=1))
    assert named["stages"]["text_encoder"] == "fp16"


def test_int8_scales_are_deterministic(exported, tmp_path):
    source = exported[0]
    files = []
    for attempt in range(2):
        backend = OrtBackend(source, threads=1)
        feeds = record_stage_feeds(backend, load_clips(CALIBRATION, backend.geometry.image_size), tokenizer_of(backend))
        files.append(tmp_path / f"mask_decoder-{attempt}.onnx")
        write_int8(source / "mask_decoder.onnx", files[-1], feeds["mask_decoder"])
    first, second = (onnx.load(str(file)) for file in files)
    assert any(node.op_type == "QuantizeLinear" for node in first.graph.node)
    scales = [{i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer if "scale" in i.name}
              for model in (first, second)]
    assert scales[0] and scales[0].keys() == scales[1].keys()
    assert all(np.array_equal(scales[0][name], scales[1][name]) for name in scales[0])


def test_gate_refuses_a_build_outside_it(exported, tmp_path):
    out = tmp_path / "int8"
    impossible = GateThresholds(mask_iou_mean=1.0, mask_iou_min=1.0, jf_delta_points=-1.0)
    config = BuildConfig(exported[0], out, "int8", stages=("mask_decoder",), calibration=CALIBRATION,
                         gate_clips=GATE_CLIPS, gate=impossible, threads=1)
    with pytest.raises(PrecisionGateError) as error:
        build_precision(config)
    assert "\n" not in str(error.value) and "outside its gate" in str(error.value)
    assert sorted(p.name for p in out.iterdir()) == ["build_report.json", "build_report.md"]
    assert json.loads((out / "build_report.json").read_text())["gate"]["passed"] is False


def test_gate_summary_tables_a_failed_build_and_refuses_a_folder_without_a_report(exported, tmp_path, capsys):
    out = tmp_path / "int8"
    impossible = GateThresholds(mask_iou_mean=1.0, mask_iou_min=1.0, jf_delta_points=-1.0)
    with pytest.raises(PrecisionGateError):
        build_precision(BuildConfig(exported[0], out, "int8", stages=("memory_encoder",), calibration=CALIBRATION,
                                    gate_clips=GATE_CLIPS, gate=impossible, threads=1))
    report = json.loads((out / "build_report.json").read_text())
    assert gate_summary.main([str(out)]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| int8 |")]
    assert [row.split(" | ")[2] for row in rows] == ["mqc", "sam2"]
    for row in rows:
        mode = report["gate"]["modes"][row.split(" | ")[2]]
        assert f"| {mode['mask_iou_mean']:.4f} | {mode['mask_iou_min']:.4f} |" in row and row.endswith("| FAIL |")
    assert gate_summary.main([str(tmp_path / "absent")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "absent/build_report.json: not a build report" in error


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_reduced_export_records_precision_and_runs(exported, tmp_path, precision):
    out = tmp_path / precision
    stages = ("image_encoder", "memory_attention", "mask_decoder", "memory_encoder")
    report = build_precision(BuildConfig(exported[0], out, precision, stages=stages, calibration=CALIBRATION,
                                         gate_clips=GATE_CLIPS, gate=ANY_RESULT, threads=1))
    assert report["gate"]["passed"] and set(report["gate"]["modes"]) == {"sam2", "mqc"}
    manifest = load_manifest(out)
    recorded = {name: entry["precision"] for name, entry in manifest.content["stages"].items()}
    assert recorded == {name: precision if name in stages else "fp32" for name in recorded}
    assert manifest.content["precision"]["gate"]["passed"]
    backend = OrtBackend(out, threads=1)
    clip = load_clips(GATE_CLIPS, backend.geometry.image_size)[0]
    results = track_prompted(backend, clip, "sam2", tokenizer_of(backend))
    assert len(results) == GATE_CLIPS.frames and all(np.isfinite(r.logits).all() for r in results)


def test_dynamic_int8_quantizes_matmuls_without_calibration_and_records_its_scheme(exported, tmp_path):
    out = tmp_path / "int8-dynamic"
    stages = ("image_encoder", "mask_decoder", "prompt_encoder")
    report = build_precision(BuildConfig(exported[0], out, "int8", stages=stages, gate_clips=GATE_CLIPS,
                                         int8=Int8Plan(scheme="dynamic"), gate=ANY_RESULT, threads=1))
    assert report["calibration"] is None and report["plan"]["int8"]["tool"].endswith("quantize_dynamic")
    manifest = load_manifest(out)
    graph = onnx.load(str(manifest.stage_file("image_encoder")))
    ops = {node.op_type for node in graph.graph.node}
    assert {"MatMulInteger", "DynamicQuantizeLinear"} <= ops and "QuantizeLinear" not in ops
    weights = {init.name for init in graph.graph.initializer}
    float_matmuls = [node for node in graph.graph.node if node.op_type == "MatMul"]
    assert all(not weights & set(node.input) for node in float_matmuls), "a weight MatMul stayed FP32"
    assert any(node.op_type == "Conv" for node in graph.graph.node), "Conv stays FP32 in the dynamic scheme"
    recorded = {name: manifest.stage_precision(name) for name in stages}
    quantized = {name for name, precision in recorded.items() if precision == "int8-dynamic"}
    assert {"image_encoder", "mask_decoder"} <= quantized
    assert set(recorded.values()) <= {"int8-dynamic", "fp32"}
    backend = OrtBackend(out, threads=1)
    results = track_prompted(backend, load_clips(GATE_CLIPS, backend.geometry.image_size)[0], "sam2",
                             tokenizer_of(backend))
    assert len(results) == GATE_CLIPS.frames and all(np.isfinite(r.logits).all() for r in results)


def test_an_unknown_int8_scheme_is_refused_in_one_line():
    with pytest.raises(ConfigError, match="INT8 scheme: expected one of"):
        Int8Plan(scheme="fp4")


def test_calibration_clips_from_a_dataset_and_a_frame_folder(tmp_path):
    from mqc_edge.data.synth import generate_dataset

    root = tmp_path / "dataset"
    generate_dataset(out=root, videos=2, frames=5, size=(96, 96), seed=3, split="test", degrade=False)
    clips = load_clips(ClipSet(source=root, clips=2, frames=4), image_size=128)
    assert 1 <= len(clips) <= 2
    for clip in clips:
        assert len(clip.frames) == 4 and clip.truth.shape == (4, 96, 96) and clip.truth[0].any() and clip.text
        assert clip.box[0] <= clip.box[2] and clip.box[1] <= clip.box[3]
    video = sorted(p for p in (root / "JPEGImages").iterdir())[0]
    folder = load_clips(ClipSet(source=video, frames=3), image_size=128)
    assert len(folder) == 1 and len(folder[0].frames) == 3 and folder[0].text is None and folder[0].truth is None


def test_cli_build_fp32_copy_passes_and_refuses_an_existing_out(exported, tmp_path, capsys):
    from mqc_edge.cli import main

    out = tmp_path / "fp32"
    argv = ["build", str(exported[0]), "--precision", "fp32", "--gate-clips", "1", "--gate-frames", "3",
            "--threads", "1", "--out", str(out)]
    assert main(argv) == 0
    assert {entry["precision"] for entry in load_manifest(out).content["stages"].values()} == {"fp32"}
    capsys.readouterr()
    assert main(argv) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0


@pytest.mark.parametrize("scheme", ["dynamic", "static"])
def test_int8_quantizes_attention_matmuls_only_when_asked(exported, tmp_path, scheme):
    """Memory attention's QK^T and AV multiply two activations: the default plans leave them FP32
    (dynamic: onnxruntime's MatMulConstBOnly; static: only weight nodes are selected),
    `activation_matmuls` quantizes them too."""
    from mqc_edge.precision.plans import write_int8_dynamic

    source = exported[0] / "memory_attention.onnx"
    feeds = None
    if scheme == "static":
        backend = OrtBackend(exported[0], threads=1)
        feeds = record_stage_feeds(backend, load_clips(CALIBRATION, backend.geometry.image_size),
                                   tokenizer_of(backend))["memory_attention"]
    counts = {}
    for both in (False, True):
        target = tmp_path / f"memory_attention-{both}.onnx"
        plan = Int8Plan(scheme=scheme, activation_matmuls=both)
        if scheme == "dynamic":
            write_int8_dynamic(source, target, plan)
        else:
            write_int8(source, target, feeds, plan)
        graph = onnx.load(str(target)).graph
        weights = {init.name for init in graph.initializer}
        dequantized = {node.output[0] for node in graph.node if node.op_type == "DequantizeLinear"}
        matmuls = [node for node in graph.node if node.op_type in ("MatMul", "MatMulInteger")]
        quantized = [node for node in matmuls if node.op_type == "MatMulInteger" or set(node.input) <= dequantized]
        float_matmuls = [node for node in matmuls if node not in quantized]
        assert all(not weights & set(node.input) for node in float_matmuls), "a weight MatMul stayed FP32"
        counts[both] = (len(float_matmuls), len(quantized))
    assert counts[False][0] > 0 and counts[True][0] == 0
    assert counts[True][1] == counts[False][1] + counts[False][0]


def _matmul_softmax_graph(weight: np.ndarray, bias: np.ndarray) -> onnx.ModelProto:
    """y = Softmax((x @ W + b) * (x @ W + b)): MatMul, Add and Mul go BF16, Softmax is an island."""
    from onnx import TensorProto, helper

    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Add", ["h", "b"], ["h2"]),
             helper.make_node("Mul", ["h2", "h2"], ["h3"]), helper.make_node("Softmax", ["h3"], ["y"], axis=-1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [8, weight.shape[0]])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [8, weight.shape[1]])],
                              [onnx.numpy_helper.from_array(weight, "W"), onnx.numpy_helper.from_array(bias, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    return model


def test_bf16_keeps_islands_fp32_and_rounds_weights_once_from_fp32(exported):
    import ml_dtypes

    from mqc_edge.precision.plans import BF16_MAX, to_bf16

    model = to_bf16(onnx.load(str(exported[0] / "mask_decoder.onnx")))
    onnx.checker.check_model(model)
    types = _types(model)
    assert onnx.TensorProto.FLOAT16 not in types.values()
    for node in (node for node in model.graph.node if node.op_type in FP16_ISLANDS):
        assert all(types.get(name) != onnx.TensorProto.BFLOAT16 for name in [*node.input, *node.output]), node.name
    assert all(types[v.name] == onnx.TensorProto.FLOAT for v in model.graph.output)
    assert any(node.op_type == "MatMul" and types.get(node.output[0]) == onnx.TensorProto.BFLOAT16
               for node in model.graph.node)
    # beyond FP16's range, and FP32's extreme (an attention mask's finfo.min): rounded once, clamped to BF16's range
    weight = np.array([[1e5, 3.0e-6], [-3.4028235e38, 0.1]], dtype=np.float32)
    converted = to_bf16(_matmul_softmax_graph(weight, np.zeros(2, np.float32)))
    stored = onnx.numpy_helper.to_array(next(i for i in converted.graph.initializer if i.name == "W"))
    assert stored.dtype == ml_dtypes.bfloat16
    expected = np.clip(weight, -BF16_MAX, BF16_MAX).astype(ml_dtypes.bfloat16)
    assert np.array_equal(stored.astype(np.float32), expected.astype(np.float32))
    assert np.isfinite(stored.astype(np.float32)).all() and float(stored[0, 0]) > 9.9e4


def test_bf16_emulation_computes_what_the_bf16_graph_computes():
    """onnx's reference evaluator runs the BF16 graph itself (ml_dtypes arithmetic, FP32
    accumulation); onnxruntime runs the emulation: equal, and both away from FP32."""
    import onnxruntime as ort
    from onnx.reference import ReferenceEvaluator

    from mqc_edge.precision.bf16_emulation import emulate_bf16
    from mqc_edge.precision.plans import to_bf16

    rng = np.random.default_rng(0)
    fp32 = _matmul_softmax_graph(rng.standard_normal((256, 32)).astype(np.float32) / 16,
                                 rng.standard_normal(32).astype(np.float32))
    bf16 = to_bf16(fp32)
    emulation = emulate_bf16(bf16)
    assert not any(init.data_type == onnx.TensorProto.BFLOAT16 for init in emulation.graph.initializer)
    x = {"x": rng.standard_normal((8, 256)).astype(np.float32)}
    reference = ReferenceEvaluator(bf16).run(None, x)[0]
    emulated = ort.InferenceSession(emulation.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, x)[0]
    exact = ort.InferenceSession(fp32.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, x)[0]
    assert np.abs(emulated - reference).max() <= 1e-6
    assert np.abs(emulated - exact).max() > 1e-3, "the emulation did not round: onnxruntime folded its Casts"


def test_bf16_build_gates_its_emulation_and_onnxruntime_refuses_it_by_name(exported, tmp_path):
    out = tmp_path / "bf16"
    stages = ("memory_encoder", "mask_decoder")
    report = build_precision(BuildConfig(exported[0], out, "bf16", stages=stages, gate_clips=GATE_CLIPS,
                                         gate=ANY_RESULT, threads=1))
    assert "emulation" in report["gate_runs"] and "emulation" in (out / "build_report.md").read_text()
    sam2 = report["gate"]["modes"]["sam2"]
    assert 0 < sam2["max_logit_abs"] < 1, "the gate ran FP32 copies, or broken graphs"
    manifest = load_manifest(out)
    assert {name: manifest.stage_precision(name) for name in stages} == {name: "bf16" for name in stages}
    graph = onnx.load(str(manifest.stage_file("mask_decoder")))
    assert any(init.data_type == onnx.TensorProto.BFLOAT16 for init in graph.graph.initializer)
    with pytest.raises(ConfigError, match=r"cannot run stages \{.*'mask_decoder': 'bf16'") as refused:
        OrtBackend(out, threads=1)
    assert "\n" not in str(refused.value)


def test_modelopt_int8_is_deterministic_tensorrt_style_and_leaves_its_source_alone(exported, tmp_path):
    source = exported[0] / "mask_decoder.onnx"
    before = (source.read_bytes(), source.stat().st_mtime_ns)
    backend = OrtBackend(exported[0], threads=1)
    feeds = record_stage_feeds(backend, load_clips(CALIBRATION, backend.geometry.image_size), tokenizer_of(backend))
    plan = Int8Plan(scheme="modelopt")
    files = [tmp_path / f"mask_decoder-{attempt}.onnx" for attempt in range(2)]
    for file in files:
        write_int8(source, file, feeds["mask_decoder"], plan)
    assert (source.read_bytes(), source.stat().st_mtime_ns) == before, "ModelOpt rewrote the source graph"
    assert set(tmp_path.iterdir()) == set(files), "side files left beside the graphs"
    first, second = (onnx.load(str(file)) for file in files)
    quantizers = [node for node in first.graph.node if node.op_type == "QuantizeLinear"]
    assert quantizers, "no Q/DQ placed"
    initializers = {i.name: onnx.numpy_helper.to_array(i) for i in first.graph.initializer}
    zero_points = [initializers[node.input[2]] for node in quantizers if len(node.input) > 2 and node.input[2] in initializers]
    assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points), "TensorRT wants s8, zero point 0"
    assert onnx.helper.printable_graph(first.graph) == onnx.helper.printable_graph(second.graph)
    second_initializers = {i.name: onnx.numpy_helper.to_array(i) for i in second.graph.initializer}
    assert all(np.array_equal(initializers[name], second_initializers[name]) for name in initializers)
    assert plan.stage_precision == "int8"


def test_modelopt_build_records_its_tool_and_runs(exported, tmp_path):
    out = tmp_path / "modelopt"
    stages = ("mask_decoder", "memory_encoder")
    report = build_precision(BuildConfig(exported[0], out, "int8", stages=stages, calibration=CALIBRATION,
                                         gate_clips=GATE_CLIPS, int8=Int8Plan(scheme="modelopt"), gate=ANY_RESULT,
                                         threads=1))
    assert report["plan"]["int8"]["tool"] == "modelopt.onnx.quantization.quantize"
    assert report["plan"]["converter_versions"]["nvidia-modelopt"]
    manifest = load_manifest(out)
    assert {name: manifest.stage_precision(name) for name in stages} == {name: "int8" for name in stages}
    backend = OrtBackend(out, threads=1)
    results = track_prompted(backend, load_clips(GATE_CLIPS, backend.geometry.image_size)[0], "sam2",
                             tokenizer_of(backend))
    assert len(results) == GATE_CLIPS.frames and all(np.isfinite(r.logits).all() for r in results)


def test_modelopt_refuses_percentile_and_says_how_to_install_itself(monkeypatch, tmp_path):
    import sys

    from mqc_edge.precision.plans import MODELOPT_INSTALL, modelopt_version
    with pytest.raises(ConfigError, match=r"modelopt scheme\): expected one of \['entropy', 'minmax'\], got 'percentile'"):
        Int8Plan(scheme="modelopt", method="percentile")
    monkeypatch.setitem(sys.modules, "modelopt.onnx.quantization", None)
    with pytest.raises(ConfigError, match="not installed") as caught:
        modelopt_version()
    assert MODELOPT_INSTALL in str(caught.value) and "\n" not in str(caught.value)


def test_modelopt_selects_nodes_by_exact_name(tmp_path):
    """ModelOpt reads node names as regular expressions matched at the start: `mm_1` alone must not
    also quantize `mm_10`."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    weights = [onnx.numpy_helper.from_array(rng.standard_normal((16, 16)).astype(np.float32), name) for name in ("w1", "w10")]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm_1"),
             helper.make_node("MatMul", ["h", "w10"], ["y"], name="mm_10")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [8, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [8, 16])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    source, target = tmp_path / "g.onnx", tmp_path / "q.onnx"
    onnx.save(model, str(source))
    feeds = [{"x": rng.standard_normal((8, 16)).astype(np.float32)} for _ in range(4)]
    write_int8(source, target, feeds, Int8Plan(scheme="modelopt", only_nodes=("mm_1",)))
    quantized = onnx.load(str(target)).graph
    dequantized = {node.output[0] for node in quantized.node if node.op_type == "DequantizeLinear"}
    by_name = {node.name: node for node in quantized.node if node.op_type == "MatMul"}
    assert set(by_name["mm_1"].input) <= dequantized
    assert not set(by_name["mm_10"].input) & dequantized
