"""`mqc-edge build`: an FP32 export to a reduced-precision export, accepted only by its gate.

The new directory has the manifest format of `mqc-edge export` (hashes, sources, contract
signatures), every stage's precision recorded, and `build_report.json` / `.md`: what was
converted, how it was calibrated, and the accuracy gate against the FP32 export on held-out
clips (export/precision_gate.py). A build outside its gate writes only the reports and raises
`PrecisionGateError`, unless forced. `mixed` quantizes each stage alone first (per-stage
sensitivity) and keeps INT8 only where that stage alone stays within the INT8 gate. A BF16
build's gate runs its emulation (export/bf16_emulation.py): onnxruntime's CPU provider has no
BF16 kernels, so the BF16 graphs it writes are for TensorRT and CUDA.
"""

from __future__ import annotations

import copy
import json
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import onnxruntime

from mqc_edge.atomic import write_text_atomically
from mqc_edge.calibration.clips import CALIBRATION_SEED, ClipSet, load_clips
from mqc_edge.calibration.reader import record_stage_feeds
from mqc_edge.errors import ConfigError
from mqc_edge.export.bf16_emulation import write_bf16_emulation
from mqc_edge.export.precision import (PRECISIONS, Fp16Plan, Int8Plan, quantizable, write_bf16, write_fp16, write_int8,
                                       write_int8_dynamic)
from mqc_edge.export.precision_gate import (
    GATES, GateThresholds, PrecisionGateError, Runs, format_gate, gate_report, stage_ms, tokenizer_of, track_all,
)
from mqc_edge.runtime.manifest import Manifest, load_manifest, sha256_of, write_manifest
from mqc_edge.runtime.backends.ort_backend import OrtBackend

REPORT_NAME = "build_report"
EMULATED_GATE = ("the BF16 emulation (FP32 arithmetic, every tensor the BF16 graph holds in BF16 rounded to it; "
                 "export/bf16_emulation.py): onnxruntime's CPU provider has no BF16 kernels; its ms are not BF16 speed")


@dataclass(frozen=True)
class BuildConfig:
    """What to build; the CLI makes it."""

    model_dir: Path  # an FP32 `mqc-edge export` directory
    out: Path  # the new export directory (must not exist)
    precision: str  # one of PRECISIONS
    stages: tuple[str, ...] | None = None  # stages to convert; None: every stage
    calibration: ClipSet = ClipSet(clips=2, frames=8, seed=CALIBRATION_SEED)  # INT8 scales come from these
    gate_clips: ClipSet = ClipSet()  # held-out clips of the gate (issue 20: 4 x 16 at the model size)
    fp16: Fp16Plan = Fp16Plan()
    int8: Int8Plan = Int8Plan()
    gate: GateThresholds | None = None  # None: GATES[precision]
    threads: int = 2  # onnxruntime intra-op threads for calibration, gate and timings
    force: bool = False  # write the export even outside the gate


@dataclass
class _Plan:
    """Per stage: the converted graph file and its precision; what each conversion was fed."""

    graphs: dict[str, tuple[Path, str]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    calibration: dict[str, Any] | None = None
    gate_graphs: dict[str, tuple[Path, str]] | None = None  # what the gate runs instead of `graphs` (BF16: emulation)


def build_precision(config: BuildConfig) -> dict[str, Any]:
    """Convert, gate, and write `config.out`; returns the build report."""
    started = time.perf_counter()
    if config.precision not in PRECISIONS:
        raise ConfigError(f"precision: expected one of {PRECISIONS}, got {config.precision!r}")
    if config.out.exists():
        raise ConfigError(f"--out {config.out}: already exists; a build writes a new export directory")
    source = load_manifest(config.model_dir)
    _require_fp32(source)
    stages = _selected_stages(config, source)
    gate = config.gate or GATES[config.precision]
    clips = load_clips(config.gate_clips, source.geometry.image_size)
    reference = track_all(source.root, clips, config.threads)
    config.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{config.out.name}-", dir=config.out.parent) as scratch:
        plan = _convert(config, source, stages, Path(scratch))
        sensitivity = None
        if config.precision == "mixed":
            sensitivity = _sensitivity(config, source, plan, reference, clips, gate, Path(scratch))
            plan.graphs = {s: g for s, g in plan.graphs.items() if sensitivity[s]["passed"]}
        staging = _assemble(Path(scratch) / "build", source, plan.graphs, {})
        gated = staging if plan.gate_graphs is None else _assemble(Path(scratch) / "gated", source, plan.gate_graphs, {})
        candidate = track_all(gated, clips, config.threads)
        report = {
            "precision": config.precision, "model_dir": str(config.model_dir), "out": str(config.out),
            "stages": {name: plan.graphs.get(name, (None, "fp32"))[1] for name in source.content["stages"]},
            "notes": plan.notes, "plan": _plan_record(config), "calibration": plan.calibration,
            "gate_clips": {**asdict(config.gate_clips), "source": _str(config.gate_clips.source)},
            "gate": gate_report(reference, candidate, clips, gate), "sensitivity": sensitivity,
            "stage_ms": {"fp32": stage_ms(reference), "build": stage_ms(candidate)},
            "gate_runs": "build" if plan.gate_graphs is None else EMULATED_GATE,
            "threads": config.threads, "build_seconds": time.perf_counter() - started,
        }
        passed = report["gate"]["passed"]
        if passed or config.force:
            _assemble(staging, source, plan.graphs, _manifest_record(report), rewrite=True)
            shutil.move(str(staging), config.out)
        else:
            config.out.mkdir()
        _write_report(config.out, report)
    if not passed and not config.force:
        raise PrecisionGateError(f"{config.precision} build of {config.model_dir} is outside its gate "
                                 f"({_verdict(report['gate'])}); reports in {config.out}, --force to keep it")
    return report


def _require_fp32(source: Manifest) -> None:
    reduced = {name: source.stage_precision(name) for name in source.content["stages"]
               if source.stage_precision(name) != "fp32"}
    if reduced:
        raise ConfigError(f"{source.root}: stages {reduced} are already reduced; build from the FP32 export")


def _selected_stages(config: BuildConfig, source: Manifest) -> list[str]:
    known = list(source.content["stages"])
    if config.stages is None:
        return known
    unknown = sorted(set(config.stages) - set(known))
    if unknown:
        raise ConfigError(f"--stages: unknown {unknown}; {config.model_dir} has {known}")
    return [name for name in known if name in config.stages]


def _convert(config: BuildConfig, source: Manifest, stages: list[str], scratch: Path) -> _Plan:
    """Every selected stage's converted graph under `scratch/graphs`."""
    plan = _Plan()
    folder = scratch / "graphs"
    folder.mkdir()
    if config.precision == "fp32":
        return plan
    if config.precision == "fp16":
        for name in stages:
            write_fp16(source.stage_file(name), folder / f"{name}.onnx", config.fp16)
            plan.graphs[name] = (folder / f"{name}.onnx", "fp16")
        return plan
    if config.precision == "bf16":
        return _convert_bf16(config, source, stages, folder, plan)
    if config.int8.scheme == "dynamic":
        return _convert_dynamic(config, source, stages, folder, plan)
    backend = OrtBackend(source.root, threads=config.threads)
    clips = load_clips(config.calibration, source.geometry.image_size)
    feeds = record_stage_feeds(backend, clips, tokenizer_of(backend))
    plan.calibration = {**asdict(config.calibration), "source": _str(config.calibration.source),
                        "clips_used": [clip.name for clip in clips],
                        "calls_per_stage": {name: len(feeds.get(name, [])) for name in stages}}
    for name in stages:
        if _note_unquantizable(config, source, name, plan):
            continue
        if not feeds.get(name):
            plan.notes[name] = "fp32: never called on the calibration clips, so no scales"
            continue
        write_int8(source.stage_file(name), folder / f"{name}.onnx", feeds[name], config.int8)
        plan.graphs[name] = (folder / f"{name}.onnx", config.int8.stage_precision)
    return plan


def _convert_bf16(config: BuildConfig, source: Manifest, stages: list[str], folder: Path, plan: _Plan) -> _Plan:
    """BF16 graphs in `folder` for the export, and their FP32 emulations beside it for the gate
    (recorded fp32 in the gate's scratch export, the only label onnxruntime runs an FP32 graph by)."""
    emulations = folder.with_name("emulations")
    emulations.mkdir()
    plan.gate_graphs = {}
    for name in stages:
        graph, emulation = folder / f"{name}.onnx", emulations / f"{name}.onnx"
        write_bf16(source.stage_file(name), graph, config.fp16)
        write_bf16_emulation(graph, emulation)
        plan.graphs[name] = (graph, "bf16")
        plan.gate_graphs[name] = (emulation, "fp32")
    return plan


def _convert_dynamic(config: BuildConfig, source: Manifest, stages: list[str], folder: Path, plan: _Plan) -> _Plan:
    """The dynamic INT8 scheme: no calibration, each quantizable stage through `write_int8_dynamic`."""
    for name in stages:
        if not _note_unquantizable(config, source, name, plan):
            write_int8_dynamic(source.stage_file(name), folder / f"{name}.onnx", config.int8)
            plan.graphs[name] = (folder / f"{name}.onnx", config.int8.stage_precision)
    return plan


def _note_unquantizable(config: BuildConfig, source: Manifest, name: str, plan: _Plan) -> bool:
    """True (and a note) when the stage has none of the plan's ops and stays FP32."""
    if quantizable(source.stage_file(name), config.int8):
        return False
    plan.notes[name] = f"fp32: none of {list(config.int8.quantized_ops)} to quantize"
    return True


def _sensitivity(config: BuildConfig, source: Manifest, plan: _Plan, reference: Runs, clips: list,
                 gate: GateThresholds, scratch: Path) -> dict[str, dict[str, Any]]:
    """Each converted stage alone in INT8, the rest FP32: its end-to-end gate report."""
    reports = {}
    for name, graph in plan.graphs.items():
        trial = _assemble(scratch / f"only-{name}", source, {name: graph}, {})
        reports[name] = gate_report(reference, track_all(trial, clips, config.threads), clips, gate)
    return reports


def _assemble(target: Path, source: Manifest, graphs: dict[str, tuple[Path, str]], record: dict[str, Any],
              rewrite: bool = False) -> Path:
    """An export directory: `graphs` where given, the source's FP32 graphs elsewhere, the
    source's auxiliary files, and its manifest with per-stage precision and fresh hashes."""
    content = copy.deepcopy(source.content)
    target.mkdir(parents=True, exist_ok=rewrite)
    for name, entry in content["stages"].items():
        file, precision = graphs.get(name, (source.stage_file(name), "fp32"))
        if not rewrite:
            shutil.copyfile(file, target / entry["file"])
        entry["precision"] = precision
    if not rewrite:
        for name in content["aux_files"].values():
            shutil.copyfile(source.root / name, target / name)
    content["files"] = {name: sha256_of(target / name) for name in content["files"]}
    content["source_parity"] = content.pop("parity", None)  # proves the FP32 graphs; this build's proof is its gate
    content["precision"] = {"source": str(source.root), "source_files": source.content["files"], **record}
    write_manifest(target, content)
    return target


def _plan_record(config: BuildConfig) -> dict[str, Any]:
    plan: dict[str, Any] = {"converter_versions": {"onnxruntime": onnxruntime.__version__}}
    if config.precision in ("fp16", "bf16"):
        plan["fp16"] = {"tool": "onnxruntime.transformers.float16.convert_float_to_float16", "keep_io_types": True,
                        **asdict(config.fp16)}
    if config.precision == "bf16":
        plan["bf16"] = {"from": "the fp16 plan's graph, 16-bit type swapped, weights rounded from FP32",
                        "gate_runs": EMULATED_GATE}
    if config.precision in ("int8", "mixed") and config.int8.scheme == "static":
        plan["int8"] = {"tool": "onnxruntime.quantization.quantize_static", "format": "QDQ",
                        "activations": "uint8 per tensor", "weights": "int8", **asdict(config.int8)}
    elif config.precision in ("int8", "mixed"):
        plan["int8"] = {"tool": "onnxruntime.quantization.quantize_dynamic", "format": "MatMulInteger",
                        "activations": "uint8 per tensor, scale computed per call", "weights": "int8",
                        **asdict(config.int8), "op_types": list(config.int8.quantized_ops)}
    return plan


def _manifest_record(report: dict[str, Any]) -> dict[str, Any]:
    gate = report["gate"]
    return {"precision": report["precision"], "plan": report["plan"], "calibration": report["calibration"],
            "gate": {"passed": gate["passed"], "thresholds": gate["thresholds"],
                     "modes": gate["modes"]},
            "report": f"{REPORT_NAME}.json"}


def _verdict(gate: dict[str, Any]) -> str:
    return "; ".join(f"{mode}: IoU mean {m['mask_iou_mean']:.4f} min {m['mask_iou_min']:.4f}, J&F delta "
                     f"{m['jf_delta_points'] if m['jf_delta_points'] is None else round(m['jf_delta_points'], 3)} pts"
                     for mode, m in gate["modes"].items() if not m["passed"])


def _write_report(out: Path, report: dict[str, Any]) -> None:
    write_text_atomically(out / f"{REPORT_NAME}.json", json.dumps(report, indent=1) + "\n")
    write_text_atomically(out / f"{REPORT_NAME}.md", format_report(report))


def format_report(report: dict[str, Any]) -> str:
    """Markdown: stages and precisions, the gate per mode, sensitivity, per-stage ms."""
    gate = report["gate"]
    lines = [f"# {report['precision']} build of {report['model_dir']}", "",
             f"Gate: {'passed' if gate['passed'] else 'FAILED'} (thresholds {gate['thresholds']}); "
             f"built in {report['build_seconds']:.0f} s, {report['threads']} threads.", "",
             *([f"The gate ran {report['gate_runs']}.", ""] if report.get("gate_runs", "build") != "build" else []),
             *format_gate(gate), "",
             "| stage | precision | ms FP32 | ms build |", "|---|---|---:|---:|"]
    fp32_ms, build_ms = report["stage_ms"]["fp32"], report["stage_ms"]["build"]
    for stage in sorted(set(fp32_ms) | set(report["stages"])):
        lines.append(f"| {stage} | {report['stages'].get(stage, '-')} | {fp32_ms.get(stage, float('nan')):.2f} | "
                     f"{build_ms.get(stage, float('nan')):.2f} |")
    if report["sensitivity"]:
        lines += ["", "Per-stage sensitivity (this stage alone INT8):", ""]
        for stage, sens in report["sensitivity"].items():
            lines += [f"### {stage}: {'within' if sens['passed'] else 'outside'} the gate", "", *format_gate(sens), ""]
    for stage, note in report["notes"].items():
        lines.append(f"- {stage}: {note}")
    return "\n".join(lines) + "\n"


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)
