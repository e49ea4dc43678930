"""`mqc-edge doctor [MODEL]`: what a user runs on a Jetson or a GPU server to see that the host works.

1. versions: Python, numpy, onnxruntime and its providers, TensorRT, the CUDA runtime and driver
   and the GPU (name, compute capability) through cuda-python;
2. a 32-frame synthetic clip (data/synth, a test seed) tracked from its first referent's box in
   SAM 2 mode on onnxruntime CPU from the FP32 export: ms per stage, FPS, J&F;
3. with TensorRT: the same clip on the native TensorRT backend from an FP16 build (for `default`,
   `mqc-edge build --precision fp16 --stages DEFAULT_FP16_STAGES` of the default export, made once
   beside it; a MODEL given by path runs as exported), engines built when missing (`--rebuild-engines`: always); accepted
   when the per-frame mask IoU against onnxruntime FP32 has mean >= 0.995 and |J&F delta| <= 0.1
   points (the FP16 build gate, precision/gate.py). Exit 1 with one line otherwise.
Without TensorRT it says so in one line and what to install; the onnxruntime check still runs.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CLIP_FRAMES = 32
CLIP_SEED = 424_242  # below the training seeds (>= 1,000,003): no training clip is this one
IOU_MEAN_MIN = 0.995  # GATES["fp16"].mask_iou_mean (precision/gate.py imports torch, so not imported)
JF_DELTA_MAX_POINTS = 0.1  # GATES["fp16"].jf_delta_points
NO_TENSORRT = ("TensorRT: not found; install tensorrt and cuda-python (pip install 'mqc-edge[gpu]') for the native "
               "backend, or onnxruntime-gpu for --backend onnxruntime-trt")


@dataclass
class ClipRun:
    """One backend over the doctor's clip: masks bool [H, W] per frame, ms per stage (mean over
    the frames that ran it), wall seconds of the tracking loop."""

    label: str
    description: str
    masks: list[np.ndarray]
    truth: list[np.ndarray]
    stage_ms: dict[str, float]
    seconds: float

    @property
    def fps(self) -> float:
        return len(self.masks) / self.seconds

    @property
    def jf(self) -> float:
        """(J + F) / 2 against the clip's exact masks, each averaged over the frames."""
        from mqc_edge.data.metrics import boundary_f, region_similarity

        j = np.mean([region_similarity(m, t) for m, t in zip(self.masks, self.truth, strict=True)])
        f = np.mean([boundary_f(m, t) for m, t in zip(self.masks, self.truth, strict=True)])
        return float((j + f) / 2)


def versions() -> list[str]:
    """One line per component; absent ones say so."""
    import onnxruntime

    lines = [f"Python {platform.python_version()}", f"numpy {np.__version__}",
             f"onnxruntime {onnxruntime.__version__} (providers: {', '.join(onnxruntime.get_available_providers())})"]
    return lines + _gpu_versions()


def _gpu_versions() -> list[str]:
    from mqc_edge.errors import MqcEdgeError
    from mqc_edge.runtime.backends import trt_backend
    from mqc_edge.runtime.backends.cuda_buffers import device_info

    missing = trt_backend.missing_packages()
    lines = [NO_TENSORRT if "tensorrt" in missing else f"TensorRT {__import__('tensorrt').__version__}"]
    if "cuda-python" in missing:
        return lines + ["CUDA: cuda-python not found (no CUDA versions or GPU to report)"]
    from cuda.bindings import runtime as cudart

    try:
        info = device_info(cudart)
    except MqcEdgeError as error:
        return lines + [f"CUDA: no usable GPU ({error})"]
    return lines + [f"CUDA runtime {_cuda_version(info.runtime_version)}, driver {_cuda_version(info.driver_version)}",
                    f"GPU {info.name}, compute capability {info.compute_capability}"]


def _cuda_version(number: int) -> str:
    return f"{number // 1000}.{number % 1000 // 10}"


def track_clip(export: Path, backend: str, frames: int = CLIP_FRAMES, threads: int = 2, engines: str = "build-missing",
               seed: int = CLIP_SEED, label: str | None = None) -> ClipRun:
    """The doctor's clip (frames at the model's image size) on `backend`, SAM 2 mode from the box."""
    from mqc_edge.benchmarks.clip import box_of
    from mqc_edge.data.synth import random_scene
    from mqc_edge.data.synth.scene import SceneRenderer
    from mqc_edge.runtime.backends.stage_backend import load_backend
    from mqc_edge.runtime.config import TrackerConfig
    from mqc_edge.runtime.tracker import Tracker

    options = {"engines": engines} if backend == "tensorrt" else {}
    stages = load_backend(backend, export_dir=Path(export), threads=threads, **options)
    size = stages.geometry.image_size
    renderer = SceneRenderer(random_scene(np.random.default_rng(seed), (size, size), frames), seed)
    ids0 = renderer.frame(0)[1]
    target = renderer.expressions(ids0)[0].obj_id
    tracker = Tracker(stages, TrackerConfig(mode="sam2"))
    results, truth, began = [], [], time.perf_counter()
    for t in range(frames):
        rgb, ids = renderer.frame(t)
        truth.append(ids == target)
        results += tracker.start(rgb, box=box_of(ids0 == target)) if t == 0 else tracker.step(rgb)
    results += tracker.finish()
    seconds = time.perf_counter() - began
    return ClipRun(label or backend, stages.description, [r.mask for r in results], truth,
                   _mean_stage_ms([r.timings_ms for r in results]), seconds)


def _mean_stage_ms(timings: list[dict[str, float]]) -> dict[str, float]:
    per_stage: dict[str, list[float]] = {}
    for frame in timings:
        for stage, ms in frame.items():
            per_stage.setdefault(stage, []).append(ms)
    return {stage: float(np.mean(values)) for stage, values in per_stage.items()}


def compare_masks(reference: list[np.ndarray], candidate: list[np.ndarray]) -> dict[str, float]:
    """Per-frame mask IoU of candidate vs reference (two empty masks: 1): mean and min."""
    from mqc_edge.benchmarks.parity_eval import mask_iou

    ious = [mask_iou(a, b) for a, b in zip(reference, candidate, strict=True)]
    return {"iou_mean": float(np.mean(ious)), "iou_min": float(np.min(ious))}


def format_run(run: ClipRun) -> list[str]:
    stages = ", ".join(f"{stage} {ms:.1f}" for stage, ms in run.stage_ms.items())
    return [f"{run.label}: {len(run.masks)} frames, {run.fps:.1f} FPS, J&F {run.jf:.4f} ({run.description})",
            f"  ms per stage: {stages}"]


def check_against(reference: ClipRun, candidate: ClipRun) -> tuple[bool, str]:
    """(accepted, one line): per-frame IoU mean >= IOU_MEAN_MIN and |J&F delta| <= JF_DELTA_MAX_POINTS."""
    iou = compare_masks(reference.masks, candidate.masks)
    delta = 100 * (candidate.jf - reference.jf)
    passed = iou["iou_mean"] >= IOU_MEAN_MIN and abs(delta) <= JF_DELTA_MAX_POINTS
    line = (f"{candidate.label} vs {reference.label}: mask IoU mean {iou['iou_mean']:.4f} (min {iou['iou_min']:.4f}, "
            f"needs >= {IOU_MEAN_MIN}), J&F delta {delta:+.3f} points (needs |delta| <= {JF_DELTA_MAX_POINTS})")
    return passed, line


def run_doctor(model_dir: Path, fp16_dir_of: Callable[[], Path] | None, frames: int = CLIP_FRAMES, threads: int = 2,
               rebuild_engines: bool = False, out: Callable[[str], None] = print,
               err: Callable[[str], None] = print) -> int:
    """Everything above; `fp16_dir_of()` gives the FP16 export TensorRT runs (None: `model_dir`
    itself). Returns the exit code: 0, or 1 when TensorRT is outside its check."""
    from mqc_edge.runtime.backends import trt_backend

    for line in versions():
        out(line)
    out(f"model: {model_dir}")
    reference = track_clip(model_dir, "onnxruntime", frames, threads, label="onnxruntime FP32 (CPU)")
    for line in format_run(reference):
        out(line)
    if trt_backend.missing_packages():
        out("result: OK on onnxruntime CPU; TensorRT not checked (not found, see above)")
        return 0
    engine_dir = fp16_dir_of() if fp16_dir_of is not None else model_dir
    candidate = track_clip(engine_dir, "tensorrt", frames, threads, "rebuild" if rebuild_engines else "build-missing",
                           label=f"TensorRT {_precision_of(engine_dir)}")
    for line in format_run(candidate):
        out(line)
    passed, line = check_against(reference, candidate)
    if not passed:
        err(f"mqc-edge doctor: FAILED: {line}")
        return 1
    out(f"result: OK: {line}")
    return 0


def _precision_of(export: Path) -> str:
    """FP16 / INT8 / FP32 as the export's manifest records its stages (the most reduced one named)."""
    import json

    stages = json.loads((Path(export) / "manifest.json").read_text())["stages"].values()
    recorded = {entry.get("precision", "fp32") for entry in stages}
    return next((p for p in ("int8", "int8-dynamic", "mixed", "fp16") if p in recorded), "fp32").upper()


def default_fp16_export(default_dir: Path, threads: int = 2, log: Callable[[str], None] = print) -> Path:
    """`mqc-edge build --precision fp16 --stages DEFAULT_FP16_STAGES` of the default export, beside
    it, named by the source's manifest hash so that a new default gets a new build; made once. Kept
    whatever its build gate says (the gate's verdict is logged): the doctor judges what TensorRT
    runs with its own check (mean IoU and J&F delta against onnxruntime FP32), and the build gate's
    per-frame minimum turns on single pixels of tiny masks (docs/precision.md, "FP16 on 16 gate clips")."""
    from mqc_edge.default_model import DEFAULT_FP16_STAGES
    from mqc_edge.runtime.manifest import MANIFEST_NAME, sha256_of

    target = default_dir.parent / f"{default_dir.name}-fp16-{sha256_of(default_dir / MANIFEST_NAME)[:12]}"
    if not (target / MANIFEST_NAME).is_file():
        from mqc_edge.precision.build import BuildConfig, build_precision

        log(f"building the FP16 export of the default model for TensorRT: {target} (once)")
        report = build_precision(BuildConfig(model_dir=default_dir, out=target, precision="fp16",
                                             stages=DEFAULT_FP16_STAGES, threads=threads, force=True))
        gate = report["gate"]
        log(f"FP16 build gate: {'passed' if gate['passed'] else 'outside'} ("
            + "; ".join(f"{mode}: IoU mean {m['mask_iou_mean']:.4f} min {m['mask_iou_min']:.4f}"
                        for mode, m in gate["modes"].items()) + f"); report in {target}")
    return target
