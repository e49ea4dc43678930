"""The accuracy gate of a reduced-precision build: the candidate export against the FP32 export
of the same model, on held-out prompted clips, per tracking mode.

Per frame: mask IoU of the candidate's mask with the FP32 mask, and the logit error; per clip:
J&F of both against the ground truth (DAVIS definitions, data/metrics.py). The delta is in
points, 100 x (J&F FP32 - J&F candidate). Issue 20's gates: FP16 mean IoU >= 0.995, min >= 0.98,
|delta| <= 0.1 point (BF16 the same); INT8 mean IoU >= 0.98, |delta| <= 1.0 point.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mqc_edge.calibration.clips import PromptedClip
from mqc_edge.calibration.reader import clip_modes, track_prompted
from mqc_edge.data.metrics import boundary_f, region_similarity
from mqc_edge.errors import MqcEdgeError
from mqc_edge.runtime.backends.ort_backend import OrtBackend
from mqc_edge.runtime.results import FrameResult
from mqc_edge.runtime.text import TextTokenizer


@dataclass(frozen=True)
class GateThresholds:
    """What a build must meet against its FP32 export (issue 20)."""

    mask_iou_mean: float
    mask_iou_min: float  # 0: not gated
    jf_delta_points: float  # |100 x J&F difference|


GATES = {
    "fp32": GateThresholds(mask_iou_mean=0.999, mask_iou_min=0.99, jf_delta_points=0.01),  # a copy: parity
    "fp16": GateThresholds(mask_iou_mean=0.995, mask_iou_min=0.98, jf_delta_points=0.1),
    "bf16": GateThresholds(mask_iou_mean=0.995, mask_iou_min=0.98, jf_delta_points=0.1),
    "int8": GateThresholds(mask_iou_mean=0.98, mask_iou_min=0.0, jf_delta_points=1.0),
    "mixed": GateThresholds(mask_iou_mean=0.98, mask_iou_min=0.0, jf_delta_points=1.0),
}

Runs = dict[tuple[int, str], list[FrameResult]]
"""(clip index, mode) -> the Tracker's results."""


def track_all(export_dir: Path, clips: list[PromptedClip], threads: int) -> Runs:
    """Every clip in every mode on the onnxruntime CPU backend of `export_dir`."""
    backend = OrtBackend(export_dir, threads=threads)
    tokenizer = tokenizer_of(backend)
    return {(index, mode): track_prompted(backend, clip, mode, tokenizer)
            for index, clip in enumerate(clips) for mode in clip_modes(clip, tokenizer)}


def tokenizer_of(backend: OrtBackend) -> TextTokenizer | None:
    mqc = backend.geometry.mqc
    return None if mqc is None or backend.tokenizer_file is None else TextTokenizer(backend.tokenizer_file, mqc.text_tokens)


def gate_report(reference: Runs, candidate: Runs, clips: list[PromptedClip], gate: GateThresholds) -> dict[str, Any]:
    """Per mode: IoU with the FP32 masks, logit error, J&F of both, delta; and the verdict."""
    modes = {}
    for mode in sorted({mode for _, mode in reference}):
        keys = [key for key in reference if key[1] == mode]
        modes[mode] = _mode_report([reference[k] for k in keys], [candidate[k] for k in keys],
                                   [clips[index].truth for index, _ in keys], gate)
    return {"thresholds": asdict(gate), "modes": modes, "passed": all(m["passed"] for m in modes.values())}


def _mode_report(reference: list[list[FrameResult]], candidate: list[list[FrameResult]],
                 truths: list[np.ndarray | None], gate: GateThresholds) -> dict[str, Any]:
    ious, logit_abs, logit_rel, jf_ref, jf_cand = [], [], [], [], []
    for ref_run, cand_run, truth in zip(reference, candidate, truths, strict=True):
        for ref, got in zip(ref_run, cand_run, strict=True):
            ious.append(region_similarity(got.mask, ref.mask))
            error = float(np.abs(got.logits - ref.logits).max())
            logit_abs.append(error)
            logit_rel.append(error / max(float(np.abs(ref.logits).max()), 1e-12))
        if truth is not None:
            jf_ref.append(clip_jf(ref_run, truth))
            jf_cand.append(clip_jf(cand_run, truth))
    report = {
        "clips": len(reference), "frames": len(ious),
        "mask_iou_mean": float(np.mean(ious)), "mask_iou_min": float(np.min(ious)),
        "max_logit_abs": max(logit_abs), "max_logit_relative": max(logit_rel),
        "jf_reference": float(np.mean(jf_ref)) if jf_ref else None,
        "jf_candidate": float(np.mean(jf_cand)) if jf_cand else None,
    }
    report["jf_delta_points"] = 100 * (report["jf_reference"] - report["jf_candidate"]) if jf_ref else None
    report["passed"] = bool(
        report["mask_iou_mean"] >= gate.mask_iou_mean and report["mask_iou_min"] >= gate.mask_iou_min
        and (report["jf_delta_points"] is None or abs(report["jf_delta_points"]) <= gate.jf_delta_points))
    return report


def clip_jf(results: list[FrameResult], truth: np.ndarray) -> float:
    """(J + F) / 2 of one clip, each averaged over its frames (DAVIS: frame 0 included here, as
    both runs are scored alike)."""
    j = np.mean([region_similarity(r.mask, t) for r, t in zip(results, truth, strict=True)])
    f = np.mean([boundary_f(r.mask, t) for r, t in zip(results, truth, strict=True)])
    return float((j + f) / 2)


def stage_ms(runs: Runs) -> dict[str, float]:
    """Median ms per stage call over every frame that called it (the Tracker's own timings)."""
    times: dict[str, list[float]] = {}
    for results in runs.values():
        for result in results:
            for stage, ms in result.timings_ms.items():
                times.setdefault(stage, []).append(ms)
    return {stage: float(np.median(values)) for stage, values in sorted(times.items())}


def format_gate(report: dict[str, Any]) -> list[str]:
    """Markdown rows, one per mode."""
    lines = ["| mode | frames | IoU mean | IoU min | max logit err (abs / rel) | J&F FP32 | J&F build | delta (pts) | gate |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for mode, m in report["modes"].items():
        jf = (f"{m['jf_reference']:.4f} | {m['jf_candidate']:.4f} | {m['jf_delta_points']:+.3f}"
              if m["jf_delta_points"] is not None else "- | - | -")
        lines.append(f"| {mode} | {m['frames']} | {m['mask_iou_mean']:.4f} | {m['mask_iou_min']:.4f} | "
                     f"{m['max_logit_abs']:.3g} / {m['max_logit_relative']:.2e} | {jf} | "
                     f"{'pass' if m['passed'] else 'FAIL'} |")
    return lines


class PrecisionGateError(MqcEdgeError):
    """A build outside its accuracy gate (the report says by how much)."""
