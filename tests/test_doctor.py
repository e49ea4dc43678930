"""`mqc-edge doctor`: the CPU path on a real export, the TensorRT path on the fake modules of
tests/runtime/test_trt_backend.py, and a TensorRT result outside the check."""

from __future__ import annotations

import numpy as np
import pytest

from mqc_edge import doctor
from mqc_edge.cli import build_parser, main
from mqc_edge.runtime.backends import trt_backend
from runtime.test_trt_backend import install_fakes, write_fake_export


def test_the_clip_is_32_frames_of_the_default_model_by_default() -> None:
    args = build_parser().parse_args(["doctor"])
    assert (args.model, args.frames, args.rebuild_engines) == ("default", 32, False)


def test_without_tensorrt_it_reports_versions_and_runs_the_onnxruntime_check(exported, monkeypatch, capsys) -> None:
    monkeypatch.setattr(trt_backend, "_importable", lambda module: False)
    code = main(["doctor", str(exported[0]), "--frames", "6", "--threads", "1"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out[0].startswith("Python 3.") and out[1].startswith("numpy ") and "CPUExecutionProvider" in out[2]
    assert out[3] == ("TensorRT: not found; install tensorrt and cuda-python (pip install 'mqc-edge[gpu]') for the "
                      "native backend, or onnxruntime-gpu for --backend onnxruntime-trt")
    run = next(line for line in out if line.startswith("onnxruntime FP32 (CPU): 6 frames, "))
    assert float(run.split(", ")[1].removesuffix(" FPS")) > 0 and "J&F " in run
    stages = next(line for line in out if line.startswith("  ms per stage: "))
    assert all(f"{stage} " in stages for stage in ("image_encoder", "memory_attention", "mask_decoder", "memory_encoder"))
    assert out[-1] == "result: OK on onnxruntime CPU; TensorRT not checked (not found, see above)"


def _tensorrt_as_reference(monkeypatch) -> None:
    """The fake export has no real ONNX graphs, so the reference run is the fake TensorRT run too."""
    real = doctor.track_clip

    def track(export, backend, *args, **kwargs):
        return real(export, "tensorrt", *args, **kwargs)

    monkeypatch.setattr(doctor, "track_clip", track)


def test_with_tensorrt_the_fp16_engines_are_built_run_and_checked(monkeypatch, tmp_path, capsys) -> None:
    trt, _ = install_fakes(monkeypatch)
    export = write_fake_export(tmp_path / "model", {"image_encoder": "fp16"})
    _tensorrt_as_reference(monkeypatch)
    code = main(["doctor", str(export), "--frames", "4"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert {"TensorRT 10.3.0", "CUDA runtime 12.8, driver 12.9", "GPU Fake GPU, compute capability 8.7"} <= set(out)
    assert any(line.startswith("TensorRT FP16: 4 frames, ") for line in out)
    assert (export / "tensorrt" / "engines.json").is_file() and trt.executed  # built, and stages ran through it
    assert out[-1].startswith("result: OK: TensorRT FP16 vs onnxruntime FP32 (CPU): mask IoU mean 1.0000")


def _run(label: str, masks: list[np.ndarray], truth: list[np.ndarray]) -> doctor.ClipRun:
    return doctor.ClipRun(label, "canned", masks, truth, {"image_encoder": 1.0}, 0.5)


def test_tensorrt_outside_the_iou_check_exits_1_with_one_line(monkeypatch, tmp_path, capsys) -> None:
    install_fakes(monkeypatch)
    export = write_fake_export(tmp_path / "model", {"image_encoder": "fp16"})
    truth = [np.ones((8, 8), bool)] * 4
    half = np.zeros((8, 8), bool)
    half[:4] = True

    def track(export, backend, *args, label=None, **kwargs):
        return _run(label, truth if backend == "onnxruntime" else [half] * 4, truth)

    monkeypatch.setattr(doctor, "track_clip", track)
    code = main(["doctor", str(export), "--frames", "4"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1
    assert err[0].startswith("mqc-edge doctor: FAILED: TensorRT FP16 vs onnxruntime FP32 (CPU): mask IoU mean 0.5000")


@pytest.mark.parametrize(("iou_mean", "jf_delta", "passed"), [(0.995, 0.0, True), (0.994, 0.0, False),
                                                              (1.0, 0.2, False)])
def test_the_check_needs_both_iou_and_jf(iou_mean, jf_delta, passed, monkeypatch) -> None:
    monkeypatch.setattr(doctor, "compare_masks", lambda a, b: {"iou_mean": iou_mean, "iou_min": iou_mean})
    monkeypatch.setattr(doctor.ClipRun, "jf", property(lambda run: 0.5 + jf_delta / 100 * (run.label == "b")))
    assert doctor.check_against(_run("a", [], []), _run("b", [], []))[0] is passed


def test_the_default_fp16_build_is_kept_outside_its_build_gate_and_the_verdict_logged(exported, tmp_path,
                                                                                       monkeypatch) -> None:
    """The doctor judges TensorRT by its own check; the build gate's verdict is one logged line."""
    import shutil

    from mqc_edge.default_model import DEFAULT_FP16_STAGES
    from mqc_edge.precision import build

    default_dir = tmp_path / "default"
    shutil.copytree(exported[0], default_dir)
    asked = []

    def fake_build(config) -> dict:
        asked.append(config)
        config.out.mkdir()
        (config.out / "manifest.json").write_text("{}")
        modes = {"mqc": {"mask_iou_mean": 0.999, "mask_iou_min": 0.973, "passed": False}}
        return {"gate": {"passed": False, "modes": modes}}

    monkeypatch.setattr(build, "build_precision", fake_build)
    lines: list[str] = []
    target = doctor.default_fp16_export(default_dir, threads=1, log=lines.append)
    assert [(c.precision, c.force, c.model_dir) for c in asked] == [("fp16", True, default_dir)]
    assert asked[0].stages == DEFAULT_FP16_STAGES and "mask_decoder" not in asked[0].stages
    assert target == asked[0].out and lines[-1].startswith("FP16 build gate: outside (mqc: IoU mean 0.9990 min 0.9730)")
    assert doctor.default_fp16_export(default_dir, threads=1, log=lines.append) == target and len(asked) == 1
