"""`mqc-edge bench FP32_DIR BUILD_DIR`: exports of one model side by side in one interleaved run,
INT8 stages costed against the u8s8 peak, and a refusal for exports of different models (issue 20)."""

from __future__ import annotations

import hashlib
import json
import shutil
import struct

import pytest

from mqc_edge.benchmarks.harness import BenchConfig, export_labels
from mqc_edge.calibration.clips import CALIBRATION_SEED, ClipSet
from mqc_edge.cli import main
from mqc_edge.errors import ConfigError
from mqc_edge.precision.build import BuildConfig, build_precision
from mqc_edge.precision.gate import GateThresholds

ANY_RESULT = GateThresholds(mask_iou_mean=0.0, mask_iou_min=0.0, jf_delta_points=100.0)  # random weights: machinery only


@pytest.fixture(scope="module")
def int8_build(exported, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("builds") / "int8"
    build_precision(BuildConfig(exported[0], out, "int8", stages=("memory_attention", "memory_encoder"),
                                calibration=ClipSet(clips=1, frames=3, seed=CALIBRATION_SEED),
                                gate_clips=ClipSet(clips=1, frames=3), gate=ANY_RESULT, threads=1))
    return out


def test_exports_run_side_by_side_with_ratios_and_int8_stages_against_u8s8(exported, int8_build, tmp_path, capsys):
    out = tmp_path / "bench"
    code = main(["bench", str(exported[0]), str(int8_build), "--out", str(out), "--frames", "4", "--repeats", "1",
                 "--threads", "1", "--vs-sam2", "--clip-size", "128", "--device-peak", "10,20", "--u8s8-peak", "40"])
    report = json.loads((out / "report.json").read_text())
    fp32, int8 = "mqc-edge/onnxruntime fp32", "mqc-edge/onnxruntime int8"
    assert code == 0 and set(report["contestants"]) == {fp32, int8, "meta-sam2-predictor"}
    assert report["exports"] == {"fp32": str(exported[0]), "int8": str(int8_build)}
    ms = {name: report["contestants"][name]["ms_per_frame"]["p50"] for name in (fp32, int8)}
    assert report["speedup_vs_first_export"] == {fp32: 1.0, int8: ms[fp32] / ms[int8]}
    assert set(report["speedup_vs_sam2"]) == {fp32, int8}
    assert report["peak"]["used_gflops"] == 10.0 and report["peak"]["used_u8s8_gops"] == 40.0
    assert report["peak"]["u8s8_gops_best_after"] >= report["peak"]["u8s8_gops_median_after"] > 0
    costs = report["stage_costs_by_export"]
    assert costs["int8"]["memory_attention"]["peak"] == "u8s8" and costs["int8"]["memory_attention"]["peak_gops"] == 40.0
    assert costs["int8"]["mask_decoder"]["peak"] == "fp32" and costs["fp32"]["memory_attention"]["peak"] == "fp32"
    attention = report["contestants"][int8]["stage_efficiency"]["memory_attention"]
    stage_ms = report["contestants"][int8]["stages"]["memory_attention"]["p50"]
    expected = costs["int8"]["memory_attention"]["gflop_compute"] / (stage_ms / 1e3) / 40.0
    assert attention["peak"] == "u8s8" and attention["fraction_of_peak"] == pytest.approx(expected, rel=1e-3)
    assert "| speed vs first export | 1.00x |" in capsys.readouterr().out


def _rewrite_manifest_hash(export, name: str) -> None:
    manifest = json.loads((export / "manifest.json").read_text())
    manifest["files"][name] = hashlib.sha256((export / name).read_bytes()).hexdigest()
    (export / "manifest.json").write_text(json.dumps(manifest))


def test_exports_of_different_models_are_refused_in_one_line(exported, int8_build, tmp_path):
    other = shutil.copytree(exported[0], tmp_path / "other")
    graph = other / "memory_encoder.onnx"
    graph.write_bytes(graph.read_bytes() + b"\0")  # another graph: another model
    _rewrite_manifest_hash(other, "memory_encoder.onnx")
    with pytest.raises(ConfigError) as error:
        export_labels(BenchConfig(other, tmp_path / "r", variants=(int8_build,)))
    assert "\n" not in str(error.value) and "not an export of the same model" in str(error.value)
    assert list(export_labels(BenchConfig(exported[0], tmp_path / "r"))) == [""]  # alone: names unchanged


def test_a_second_export_of_the_same_checkpoint_benches_with_the_first_ones_build(exported, int8_build, tmp_path):
    """Two exports of one checkpoint differ in weights.safetensors' header (safetensors writes its
    metadata keys in a per-process order); the same graphs are the same model."""
    other = shutil.copytree(exported[0], tmp_path / "other")
    weights = other / "weights.safetensors"
    raw = weights.read_bytes()
    size = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + size])
    header["__metadata__"] = dict(reversed(list(header["__metadata__"].items())))
    text = json.dumps(header, separators=(",", ":")).encode().ljust(size)
    assert len(text) == size and text != raw[8:8 + size]
    weights.write_bytes(raw[:8] + text + raw[8 + size:])
    _rewrite_manifest_hash(other, "weights.safetensors")
    assert list(export_labels(BenchConfig(other, tmp_path / "r", variants=(int8_build,)))) == ["fp32", "int8"]
