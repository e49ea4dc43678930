"""`mqc-edge build`: an FP32 export to a reduced-precision export, accepted only by its gate.

The new directory has the manifest format of `mqc-edge export` (hashes, sources, contract
signatures), every stage's precision recorded, and `build_report.json` / `.md`: what was
converted, how it was calibrated, and the accuracy gate against the FP32 export on held-out
clips (precision/gate.py). A build outside its gate writes only the reports and raises
`PrecisionGateError`, unless forced. `mixed` quantizes each stage alone first (per-stage
sensitivity) and keeps INT8 only where that stage alone stays within the INT8 gate; with
`node_search`, a stage outside it gets its most sensitive nodes left FP32 until it is within
(precision/node_sensitivity.py), and stays FP32 only when half its nodes do not suffice. A BF16
build's gate runs its emulation (precision/bf16_emulation.py): onnxruntime's CPU provider has no
BF16 kernels, so the BF16 graphs it writes are for TensorRT and CUDA.
"""

from __future__ import annotations

import copy
import dataclasses
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
from mqc_edge.calibration.reader import Feeds, record_stage_feeds
from mqc_edge.errors import ConfigError
from mqc_edge.precision.bf16_emulation import write_bf16_emulation
from mqc_edge.precision.gate import (
    GATES, GateThresholds, PrecisionGateError, Runs, format_gate, gate_report, stage_ms, tokenizer_of, track_all,
)
from mqc_edge.precision.node_sensitivity import rank_nodes, smallest_passing_exclusion, write_quantized
from mqc_edge.precision.plans import (PRECISIONS, Fp16Plan, Int8Plan, modelopt_version, quantizable, write_bf16,
                                      write_fp16, write_int8, write_int8_dynamic)
from mqc_edge.runtime.manifest import Manifest, load_manifest, sha256_of, write_manifest
from mqc_edge.runtime.backends.ort_backend import OrtBackend

REPORT_NAME = "build_report"
EMULATED_GATE = ("the BF16 emulation (FP32 arithmetic, every tensor the BF16 graph holds in BF16 rounded to it; "
                 "precision/bf16_emulation.py): onnxruntime's CPU provider has no BF16 kernels; its ms are not BF16 speed")


@dataclass(frozen=True)
class BuildConfig:
    """What to build; the CLI makes it."""

    model_dir: Path  # an FP32 `mqc-edge export` directory
    out: Path  # the new export directory (must not exist)
    precision: str  # one of PRECISIONS
    stages: tuple[str, ...] | None = None  # stages to convert; None: every stage (FP16/BF16: but ONCE_PER_EXPRESSION)
    calibration: ClipSet = ClipSet(clips=2, frames=8, seed=CALIBRATION_SEED)  # INT8 scales come from these
    gate_clips: ClipSet = ClipSet()  # held-out clips of the gate (issue 20: 4 x 16 at the model size)
    fp16: Fp16Plan = Fp16Plan()
    int8: Int8Plan = Int8Plan()
    gate: GateThresholds | None = None  # None: GATES[precision]
    threads: int = 2  # onnxruntime intra-op threads for calibration, gate and timings
    force: bool = False  # write the export even outside the gate
    node_search: bool = False  # mixed: a stage outside the gate alone gets its most sensitive nodes left FP32


@dataclass
class _Plan:
    """Per stage: the converted graph file and its precision; what each conversion was fed."""

    graphs: dict[str, tuple[Path, str]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    calibration: dict[str, Any] | None = None
    feeds: dict[str, list[Feeds]] | None = None  # the calibration clips' stage feeds, where recorded
    gate_graphs: dict[str, tuple[Path, str]] | None = None  # what the gate runs instead of `graphs` (BF16: emulation)


def build_precision(config: BuildConfig) -> dict[str, Any]:
    """Convert, gate, and write `config.out`; returns the build report."""
    started = time.perf_counter()
    if config.precision not in PRECISIONS:
        raise ConfigError(f"precision: expected one of {PRECISIONS}, got {config.precision!r}")
    if config.out.exists():
        raise ConfigError(f"--out {config.out}: already exists; a build writes a new export directory")
    if config.precision in ("int8", "mixed") and config.int8.scheme == "modelopt":
        modelopt_version()  # missing: one line with the install command, before any calibration work
    source = load_manifest(config.model_dir)
    _require_fp32(source)
    stages = _selected_stages(config, source)
    gate = config.gate or GATES[config.precision]
    clips = load_clips(config.gate_clips, source.geometry.image_size)
    reference = track_all(source.root, clips, config.threads)
    config.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{config.out.name}-", dir=config.out.parent) as scratch:
        plan = _convert(config, source, stages, Path(scratch))
        judged = (reference, clips, gate)
        sensitivity, node_search, dropped = None, None, None
        if config.precision == "mixed":
            sensitivity, node_search = _choose_stages(config, source, plan, judged, Path(scratch))
            staging, candidate, verdict, dropped = _fit_combination(config, source, plan, sensitivity, judged,
                                                                    Path(scratch))
        else:
            staging, candidate, verdict = _stage_and_gate(config, source, plan, judged, Path(scratch) / "build")
        report = {
            "precision": config.precision, "model_dir": str(config.model_dir), "out": str(config.out),
            "stages": {name: plan.graphs.get(name, (None, "fp32"))[1] for name in source.content["stages"]},
            "notes": plan.notes, "plan": _plan_record(config), "calibration": plan.calibration,
            "gate_clips": {**asdict(config.gate_clips), "source": _str(config.gate_clips.source)},
            "gate": verdict, "sensitivity": sensitivity, "node_search": node_search, "dropped": dropped,
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


def _stage_and_gate(config: BuildConfig, source: Manifest, plan: _Plan, judged: tuple[Runs, list, GateThresholds],
                    target: Path) -> tuple[Path, Runs, dict[str, Any]]:
    """`plan` assembled at `target`, tracked over the gate clips (its emulation for BF16), gated."""
    reference, clips, gate = judged
    staging = _assemble(target, source, plan.graphs, {})
    gated = staging if plan.gate_graphs is None else _assemble(target.with_name(f"{target.name}-gated"), source,
                                                                plan.gate_graphs, {})
    candidate = track_all(gated, clips, config.threads)
    return staging, candidate, gate_report(reference, candidate, clips, gate)


def _choose_stages(config: BuildConfig, source: Manifest, plan: _Plan, judged: tuple[Runs, list, GateThresholds],
                   scratch: Path) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]] | None]:
    """Mixed: every converted stage gated alone; with `node_search` the ones outside get nodes left
    FP32 (`_search_nodes`); `plan` keeps the stages within the gate alone. Returns the per-stage
    reports and the node search's."""
    sensitivity = _sensitivity(config, source, plan, judged, scratch)
    node_search = _search_nodes(config, source, plan, sensitivity, judged, scratch) if config.node_search else None
    for name, result in (node_search or {}).items():
        if result["excluded_nodes"]:
            result["all_nodes_gate"] = sensitivity[name]
            sensitivity[name] = {**result["tries"][-1]["gate"], "fp32_nodes": result["excluded_nodes"]}
    plan.graphs = {name: graph for name, graph in plan.graphs.items() if sensitivity[name]["passed"]}
    return sensitivity, node_search


def _fit_combination(config: BuildConfig, source: Manifest, plan: _Plan, alone: dict[str, dict[str, Any]],
                     judged: tuple[Runs, list, GateThresholds], scratch: Path
                     ) -> tuple[Path, Runs, dict[str, Any], list[dict[str, Any]]]:
    """Mixed: the stages within the gate alone can add up to a combination outside it. While it is
    outside, the INT8 stage that costs the failing modes the most IoU per ms it saves (its alone
    figures, `_cost_per_ms`) goes back to FP32 and the rest is gated again. Returns the staged
    export, its runs, its gate, and every dropped stage with the gate that dropped it."""
    fp32_ms = stage_ms(judged[0])
    dropped: list[dict[str, Any]] = []
    while True:
        staging, candidate, verdict = _stage_and_gate(config, source, plan, judged, scratch / f"build-{len(dropped)}")
        if verdict["passed"] or not plan.graphs:
            return staging, candidate, verdict, dropped
        failing = [mode for mode, m in verdict["modes"].items() if not m["passed"]]
        victim = max(plan.graphs, key=lambda name: _cost_per_ms(alone[name], failing, fp32_ms.get(name, 0.0)))
        dropped.append({"stage": victim, "gate": verdict})
        del plan.graphs[victim]


def _cost_per_ms(alone: dict[str, Any], failing: list[str], fp32_ms: float) -> float:
    """A stage's harm to the failing modes (1 - its alone IoU mean, worst mode) per ms its INT8
    saves against FP32 (a saving of 1 us or less counts as 1 us)."""
    harm = max((1.0 - alone["modes"][mode]["mask_iou_mean"] for mode in failing if mode in alone["modes"]), default=0.0)
    return harm / max(fp32_ms - alone["stage_ms"], 1e-3)


def _require_fp32(source: Manifest) -> None:
    reduced = {name: source.stage_precision(name) for name in source.content["stages"]
               if source.stage_precision(name) != "fp32"}
    if reduced:
        raise ConfigError(f"{source.root}: stages {reduced} are already reduced; build from the FP32 export")


ONCE_PER_EXPRESSION = ("text_encoder",)
"""Stages that run once per expression, not per frame: an FP16 or BF16 build leaves them FP32 unless
`stages` names them. They save no per-frame time there, and the tenth-session default's MiniLM in
FP16 moved a text start outside the FP16 gate (IoU min 0.70, J&F delta -0.19 points; the rest of
the model in FP16 passes: docs/precision.md)."""


def _selected_stages(config: BuildConfig, source: Manifest) -> list[str]:
    known = list(source.content["stages"])
    if config.stages is None:
        if config.precision in ("fp16", "bf16"):
            return [name for name in known if name not in ONCE_PER_EXPRESSION]
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
    feeds = _record_feeds(config, source, stages, plan, "INT8 scales")
    for name in stages:
        if _note_unquantizable(config, source, name, plan):
            continue
        if not feeds.get(name):
            plan.notes[name] = "fp32: never called on the calibration clips, so no scales"
            continue
        write_int8(source.stage_file(name), folder / f"{name}.onnx", feeds[name], config.int8)
        plan.graphs[name] = (folder / f"{name}.onnx", config.int8.stage_precision)
    return plan


def _record_feeds(config: BuildConfig, source: Manifest, stages: list[str], plan: _Plan,
                  use: str) -> dict[str, list[Feeds]]:
    """The calibration clips' stage feeds through the FP32 pipeline, kept in `plan` and recorded
    in its calibration entry (`use`: what they are for)."""
    backend = OrtBackend(source.root, threads=config.threads)
    clips = load_clips(config.calibration, source.geometry.image_size)
    plan.feeds = record_stage_feeds(backend, clips, tokenizer_of(backend))
    plan.calibration = {**asdict(config.calibration), "source": _str(config.calibration.source), "used_for": use,
                        "clips_used": [clip.name for clip in clips],
                        "calls_per_stage": {name: len(plan.feeds.get(name, [])) for name in stages}}
    return plan.feeds


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


def _sensitivity(config: BuildConfig, source: Manifest, plan: _Plan, judged: tuple[Runs, list, GateThresholds],
                 scratch: Path) -> dict[str, dict[str, Any]]:
    """Each converted stage alone in INT8, the rest FP32: its end-to-end gate report and its ms."""
    return {name: _gate_alone(config, source, name, graph, judged, scratch / f"only-{name}")
            for name, graph in plan.graphs.items()}


def _gate_alone(config: BuildConfig, source: Manifest, name: str, graph: tuple[Path, str],
                judged: tuple[Runs, list, GateThresholds], target: Path) -> dict[str, Any]:
    """Stage `name` as `graph`, every other stage FP32: the gate report, plus the stage's median ms."""
    reference, clips, gate = judged
    runs = track_all(_assemble(target, source, {name: graph}, {}), clips, config.threads)
    return {**gate_report(reference, runs, clips, gate), "stage_ms": stage_ms(runs).get(name, 0.0)}


def _search_nodes(config: BuildConfig, source: Manifest, plan: _Plan, sensitivity: dict[str, dict[str, Any]],
                  judged: tuple[Runs, list, GateThresholds], scratch: Path) -> dict[str, dict[str, Any]]:
    """Each converted stage outside the gate alone: its weight nodes ranked on the calibration
    feeds, then the top 1, 2, 4, ... left FP32 until the stage alone passes the gate
    (node_sensitivity.py); a passing graph replaces the stage's in `plan`. Per stage: the ranking,
    every try's gate report, and the excluded nodes (None: no try passed)."""
    failing = [name for name in plan.graphs if not sensitivity[name]["passed"]]
    feeds = plan.feeds if plan.feeds is not None or not failing else _record_feeds(
        config, source, list(plan.graphs), plan, "ranking nodes by INT8 sensitivity")
    return {name: _search_stage(config, source, plan, name, feeds.get(name, []), judged, scratch) for name in failing}


def _search_stage(config: BuildConfig, source: Manifest, plan: _Plan, name: str, feeds: list[Feeds],
                  judged: tuple[Runs, list, GateThresholds], scratch: Path) -> dict[str, Any]:
    if not feeds:
        return {"ranking": [], "tries": [], "excluded_nodes": None,
                "note": "never called on the calibration clips: no feeds to rank its nodes on"}
    ranking = rank_nodes(source.stage_file(name), feeds, config.int8, config.threads)
    precision = plan.graphs[name][1]
    tries: list[dict[str, Any]] = []

    def passes(excluded: tuple[str, ...]) -> bool:
        graph = scratch / "graphs" / f"{name}-{len(excluded)}-fp32-nodes.onnx"
        write_quantized(source.stage_file(name), graph, feeds, dataclasses.replace(config.int8, excluded_nodes=excluded))
        report = _gate_alone(config, source, name, (graph, precision), judged, scratch / f"only-{name}-{len(excluded)}")
        tries.append({"excluded": list(excluded), "gate": report})
        if report["passed"]:
            plan.graphs[name] = (graph, precision)
        return report["passed"]

    chosen = smallest_passing_exclusion(ranking, passes)
    return {"ranking": [asdict(item) for item in ranking], "tries": tries,
            "excluded_nodes": None if chosen is None else list(chosen)}


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
    if config.precision == "mixed":
        plan["node_search"] = config.node_search
    if config.precision in ("int8", "mixed") and config.int8.scheme == "static":
        plan["int8"] = {"tool": "onnxruntime.quantization.quantize_static", "format": "QDQ",
                        "activations": "uint8 per tensor", "weights": "int8", **asdict(config.int8)}
    elif config.precision in ("int8", "mixed") and config.int8.scheme == "modelopt":
        plan["int8"] = {"tool": "modelopt.onnx.quantization.quantize", "format": "QDQ (TensorRT placement)",
                        "activations": "int8 per tensor, symmetric", "weights": "int8", **asdict(config.int8)}
        plan["converter_versions"]["nvidia-modelopt"] = modelopt_version()
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
            "fp32_nodes": {stage: result["excluded_nodes"] for stage, result in (report["node_search"] or {}).items()
                           if result["excluded_nodes"]},
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
    for drop in report.get("dropped") or []:
        failing = ", ".join(f"{mode} IoU mean {m['mask_iou_mean']:.4f}" for mode, m in drop["gate"]["modes"].items()
                            if not m["passed"])
        lines.append(f"- {drop['stage']} back to FP32: the combination with it was outside the gate ({failing})")
    if report["sensitivity"]:
        lines += ["", "Per-stage sensitivity (this stage alone INT8):", ""]
        for stage, sens in report["sensitivity"].items():
            nodes = f" with {len(sens['fp32_nodes'])} weight nodes FP32 (node sensitivity)" if "fp32_nodes" in sens else ""
            lines += [f"### {stage}{nodes}: {'within' if sens['passed'] else 'outside'} the gate", "",
                      *format_gate(sens), ""]
    lines += _format_node_search(report.get("node_search"))
    for stage, note in report["notes"].items():
        lines.append(f"- {stage}: {note}")
    return "\n".join(lines) + "\n"


def _format_node_search(search: dict[str, dict[str, Any]] | None, shown: int = 8) -> list[str]:
    """Per stage outside the gate alone: every try (nodes left FP32, verdict, IoU mean per mode),
    the verdict, and the `shown` most sensitive nodes."""
    lines = []
    for stage, result in (search or {}).items():
        excluded = result["excluded_nodes"]
        names = {item["node"]: item["parameter"] for item in result["ranking"]}
        verdict = (f"INT8 with {len(excluded)} of {len(result['ranking'])} weight nodes FP32: "
                   f"{', '.join(names[node] for node in excluded)}"
                   if excluded else f"stays FP32 ({result.get('note', 'no try passed')})")
        lines += ["", f"### Node sensitivity, {stage}: {verdict}", "",
                  "| nodes FP32 | gate | IoU mean per mode |", "|---:|---|---|"]
        for attempt in result["tries"]:
            modes = ", ".join(f"{mode} {m['mask_iou_mean']:.4f}" for mode, m in attempt["gate"]["modes"].items())
            lines.append(f"| {len(attempt['excluded'])} | {'pass' if attempt['gate']['passed'] else 'FAIL'} | {modes} |")
        top = ", ".join(f"{item['parameter']} ({item['node']}) {item['relative_error']:.4f}"
                        for item in result["ranking"][:shown])
        lines += ["", f"Most sensitive alone (relative output error): {top}"]
    return lines


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)
