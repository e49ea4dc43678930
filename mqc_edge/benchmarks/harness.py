"""`mqc-edge bench`: every contestant on the same clip, weights and size, in one process.

Contestants run interleaved (repeat 1 of each, then repeat 2 of each, ...) after one warm-up
pass each, so a slow drift of the machine (thermal, a neighbour process) spreads over all of
them instead of biasing whichever ran last. Ratios are only ever taken between contestants of
the same run. With several object counts (`--objects 1 4 16`) every count is such a round,
on the same clip, and every contestant gets the same boxes. `--device cuda` / `--precision` put the
torch contestant and Meta's predictor (eager; with `--vs-sam2-compiled` also compiled,
`vos_optimized=True`, where it builds) on the GPU at that precision; our torch contestant also reports its host-device syncs per frame.
Several exports of one model (`mqc-edge bench FP32_DIR INT8_DIR MIXED_DIR`, builds of `mqc-edge
build`) are each one more contestant of the same interleaved run, with per-stage ms and speed
ratios against the first export; INT8 stages are costed against the u8s8 MatMulInteger peak
measured in the run beside the FP32 MatMul peak (peak.py).
"""

from __future__ import annotations

import dataclasses
import json
import platform
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from mqc_edge.benchmarks.clip import BenchClip, Box, prompt_boxes, synthetic_clip, video_clip
from mqc_edge.benchmarks.contestant import ContestantRun
from mqc_edge.benchmarks.cost_model import stage_cost, stage_efficiency
from mqc_edge.benchmarks.memory import peak_resident_bytes
from mqc_edge.benchmarks.peak import measure_matmul_peak, measure_u8s8_peak
from mqc_edge.benchmarks.stats import summarize
from mqc_edge.benchmarks.tracker_contestant import ORCHESTRATION, run_tracker
from mqc_edge.contract import TRACKING_PROMPT_TOKENS
from mqc_edge.errors import ConfigError
from mqc_edge.runtime.config import TrackerConfig
from mqc_edge.runtime.manifest import Manifest, load_manifest
from mqc_edge.runtime.model_source import ModelSource, load_model
from mqc_edge.runtime.multi_tracker import MultiTracker

META = "meta-sam2-predictor"
META_COMPILED = f"{META} (vos_optimized)"
MODES = ("sam2", "mqc")
FRAME_STEP_LABEL = "frame-step"
"""Contestant label of the torch backend with `TrackerConfig.frame_step` (one CUDA graph per tracking frame on CUDA)."""
ENCODE_AHEAD_LABEL = "encode-ahead"
"""Contestant label of onnxruntime on the CPU with `TrackerConfig.encode_ahead`, every session one thread
(the image encoder's worker thread and the caller's thread then share the cores)."""


@dataclass(frozen=True)
class BenchConfig:
    """What to measure; the CLI builds it."""

    model_dir: Path  # an `mqc-edge export` directory: graphs for the cost model, weights for torch and Meta
    out_dir: Path
    backends: tuple[str, ...] = ("onnxruntime",)  # our runtime's backends under test
    vs_pytorch: bool = False  # add the torch reference pipeline (same Tracker, torch stages)
    vs_sam2: bool = False  # add Meta's SAM2VideoPredictor (box prompt, same weights and size)
    modes: tuple[str, ...] = ("sam2",)  # head-to-head is SAM 2 mode; "mqc" (an MQC-SAM export) is reported beside it
    objects: tuple[int, ...] = (1,)  # objects tracked at once, one round per count; the first is the headline
    frames: int = 24  # the clip length
    repeats: int = 3  # interleaved passes per contestant after one warm-up pass
    threads: int = 2  # intra-op threads of every contestant (this machine has 2 cores)
    video: Path | None = None  # a user's video; default a synthetic satellite clip
    box: Box | None = None  # prompt box for a user's video
    clip_size: int = 480  # synthetic clip side, px
    seed: int = 0
    device_peak: tuple[float, float] | None = None  # (GFLOP/s, GB/s); default: measured MatMul peak, bandwidth 20 GB/s
    u8s8_peak: float | None = None  # GOP/s of INT8 stages' floor; default: measured u8s8 MatMulInteger peak
    variants: tuple[Path, ...] = ()  # more exports of model_dir's model (its `mqc-edge build`s), one contestant each
    device: str = "cpu"  # torch device of the torch contestant and Meta's predictor: cpu, cuda, cuda:N
    precision: str = "fp32"  # of the torch contestant and Meta's predictor: fp32, tf32, fp16, bf16 (torch_backend.py)
    meta_compiled: bool = False  # with vs_sam2 on CUDA: Meta's predictor compiled too (vos_optimized: minutes of torch.compile)
    frame_step: bool = False  # a torch contestant more in SAM 2 mode: tracking frames as one captured step (CUDA graph)
    encode_ahead: bool = False  # per export and mode, an onnxruntime contestant more with encode-ahead, 1-thread sessions

    def __post_init__(self) -> None:
        if not self.modes or set(self.modes) - set(MODES):
            raise ConfigError(f"bench modes: expected some of {MODES}, got {self.modes}")
        if not self.objects or min(self.objects) < 1:
            raise ConfigError(f"bench objects: expected counts >= 1, got {self.objects}")
        if self.meta_compiled and not (self.vs_sam2 and self.device.startswith("cuda")):
            raise ConfigError("bench --vs-sam2-compiled: Meta's compiled predictor (vos_optimized) runs with "
                              f"--vs-sam2 on a CUDA --device; got vs_sam2={self.vs_sam2}, device {self.device}")
        if self.frame_step and not (("torch" in self.backends or self.vs_pytorch) and "sam2" in self.modes):
            raise ConfigError("bench --frame-step: the captured tracking step is the torch backend's, in SAM 2 mode; "
                              f"got backends {list(self.backends)} (vs_pytorch={self.vs_pytorch}), modes {list(self.modes)}")
        if self.encode_ahead and "onnxruntime" not in self.backends:
            raise ConfigError(f"bench --encode-ahead: runs onnxruntime on the CPU; got backends {list(self.backends)}")


@dataclass
class ContestantResults:
    """All measured passes of one contestant (warm-up excluded)."""

    runs: list[ContestantRun] = field(default_factory=list)

    def samples(self, key: str | None = None) -> list[float]:
        if key is None:
            return [ms for run in self.runs for ms in run.frame_ms]
        return [ms for run in self.runs for ms in run.stage_ms.get(key, [])]


def contestant_name(backend: str, mode: str, export: str = "") -> str:
    """`export`: the export's label when several exports run side by side, else empty."""
    return f"mqc-edge/{backend}" + (f" {export}" if export else "") + ("" if mode == "sam2" else f" ({mode} mode)")


def _model_identity(manifest: Manifest) -> str:
    """The FP32 export's graph hashes (its .onnx files): an export's own, or those a build records of
    its source. weights.safetensors is left out: the graphs carry the same weights, and exports
    written before model/checkpoint.py sorted its metadata keys differ in its header (safetensors
    orders them per process)."""
    record = manifest.content.get("precision")
    files = record["source_files"] if record else manifest.content["files"]
    return json.dumps({name: digest for name, digest in files.items() if name.endswith(".onnx")}, sort_keys=True)


def _precision_label(manifest: Manifest) -> str:
    record = manifest.content.get("precision")
    return "fp32" if record is None else record["precision"]


def export_labels(config: BenchConfig) -> dict[str, Path]:
    """Label -> export directory, model_dir first: "" when it runs alone; with variants each export's
    precision (its directory where two share one). ConfigError (one line) when the exports are
    not all of one model (a build's recorded source hashes against an export's own)."""
    exports = (config.model_dir, *config.variants)
    if len(exports) == 1:
        return {"": config.model_dir}
    manifests = [load_manifest(path) for path in exports]
    for path, manifest in zip(exports[1:], manifests[1:]):
        if _model_identity(manifest) != _model_identity(manifests[0]):
            raise ConfigError(f"bench: {path} is not an export of the same model as {config.model_dir} "
                              "(their FP32 sources differ); compare exports of one model")
    labels = [_precision_label(manifest) for manifest in manifests]
    if len(set(labels)) < len(labels):
        labels = [str(path) for path in exports]
    return dict(zip(labels, exports))


def _entrants(config: BenchConfig, labels: dict[str, Path]) -> list[tuple[str, str, Path]]:
    """(backend, export label, export) of each of our contestants: every backend on every export;
    torch on the first only (it runs the source weights, whatever precision the graphs have)."""
    first = next(iter(labels))
    entrants = [(backend, label, path) for backend in config.backends for label, path in labels.items()
                if backend != "torch" or label == first]
    return entrants + ([("torch", first, config.model_dir)] if config.vs_pytorch else [])


def check_device(config: BenchConfig) -> None:
    """ConfigError (one line) when the torch device or the precision cannot run here, before anything loads."""
    if config.device == "cpu" and config.precision == "fp32":
        return
    from mqc_edge.model.torch_backend import check_precision, resolve_device

    check_precision(resolve_device(config.device), config.precision)


def _meta_predictors(config: BenchConfig, clip: BenchClip, scratch: Path) -> tuple[dict[str, object], dict[str, str]]:
    """Meta's predictor by contestant name, and why a variant was not built: eager always; with
    `meta_compiled` (CUDA) also compiled (`vos_optimized=True`), kept only if it builds and runs one
    pass on the clip."""
    import torch

    from mqc_edge.benchmarks.meta_predictor import build_meta_predictor, meta_checkpoint, run_meta_predictor

    torch.set_num_threads(config.threads)
    manifest = load_manifest(config.model_dir)
    checkpoint = meta_checkpoint(manifest.file("weights"), scratch / "meta_sam2.pt")
    build = (checkpoint, manifest.content["model"]["sam2_variant"], manifest.geometry.image_size, config.device)
    predictors: dict[str, object] = {META: build_meta_predictor(*build)}
    if not config.meta_compiled:
        return predictors, {}
    try:
        compiled = build_meta_predictor(*build, vos_optimized=True)
        run_meta_predictor(compiled, clip.folder, clip.boxes[:1], config.precision)
    except Exception as error:  # torch.compile fails in many ways (no Triton, no compiler, a graph break)
        return predictors, {META_COMPILED: f"not built: {type(error).__name__}: {str(error).splitlines()[0][:200]}"}
    predictors[META_COMPILED] = compiled
    return predictors, {}


def _torch_source(config: BenchConfig) -> ModelSource:
    """The export's source weights on the torch backend, on `config.device` at `config.precision`."""
    from mqc_edge.model.torch_backend import TorchBackend

    source = load_model(config.model_dir, backend="torch", device=config.device, threads=config.threads)
    if config.precision == "fp32":
        return source
    backend = TorchBackend(source.backend.model, config.device, source.description, config.precision)
    return dataclasses.replace(source, backend=backend)


def _sync_counter(source: ModelSource) -> Callable[[], int] | None:
    """The backend's running count of host-device syncs (the torch executor keeps one), else None."""
    executor = getattr(source.backend, "executor", None)
    return (lambda: executor.syncs) if hasattr(executor, "syncs") else None


def _runners(config: BenchConfig, clip: BenchClip, boxes: list[Box], sources: dict[tuple[str, str], ModelSource],
             meta: dict[str, object], ahead: dict[str, ModelSource]) -> dict[str, Callable[[], ContestantRun]]:
    """One pass of each contestant on `boxes`, as a call; `ahead`: per export label, the 1-thread
    onnxruntime source of its encode-ahead contestants."""
    from mqc_edge.benchmarks.meta_predictor import run_meta_predictor

    prompts = [{"box": box} for box in boxes]
    runners: dict[str, Callable[[], ContestantRun]] = {}
    for mode in config.modes:
        for (backend, label), source in sources.items():
            name = contestant_name(backend, mode, label)
            configs = {name: TrackerConfig(mode=mode)}
            if config.frame_step and backend == "torch" and mode == "sam2":
                configs[_frame_step_name(label)] = TrackerConfig(mode=mode, frame_step=True)
            for name, tracker_config in configs.items():
                runners[name] = lambda s=source, c=tracker_config, n=name: run_tracker(
                    n, MultiTracker(s.backend, c, s.tokenizer, s.text_cache), clip.frames, prompts, _sync_counter(s))
        for label, source in ahead.items():
            config_ahead = TrackerConfig(mode=mode, encode_ahead=True)
            runners[encode_ahead_name(mode, label)] = lambda s=source, c=config_ahead, n=encode_ahead_name(mode, label): \
                run_tracker(n, MultiTracker(s.backend, c, s.tokenizer, s.text_cache), clip.frames, prompts,
                            overlapped=True)
    for name, predictor in meta.items():
        runners[name] = lambda p=predictor: run_meta_predictor(p, clip.folder, boxes, config.precision)
    return runners


def interleave(runners: dict[str, Callable[[], ContestantRun]], repeats: int) -> dict[str, ContestantResults]:
    """One warm-up pass per contestant (not recorded), then `repeats` rounds of one pass each."""
    for run in runners.values():
        run()
    results = {name: ContestantResults() for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            results[name].runs.append(run())
    return results


def measure(config: BenchConfig, clip: BenchClip, scratch: Path,
            not_built: dict[str, str] | None = None) -> dict[int, dict[str, ContestantResults]]:
    """Per object count, every contestant's passes; models and sessions are loaded once. A contestant
    that could not be built is left out, its reason added to `not_built`."""
    labels = export_labels(config)
    sources = {(backend, label): _torch_source(config) if backend == "torch" else
               load_model(path, backend=backend, threads=config.threads)
               for backend, label, path in _entrants(config, labels)}
    # BenchConfig lets encode_ahead in only beside the onnxruntime backend: every export has its twin
    ahead = {label: load_model(path, backend="onnxruntime", threads=1)
             for label, path in labels.items()} if config.encode_ahead else {}
    meta, skipped = _meta_predictors(config, clip, scratch) if config.vs_sam2 else ({}, {})
    if config.frame_step:
        skipped.update(_capture_frame_steps(config, sources))
        config = dataclasses.replace(config, frame_step=not any(FRAME_STEP_LABEL in name for name in skipped))
    if not_built is not None:
        not_built.update(skipped)
    frame_size = clip.frames[0].shape[:2]
    return {count: interleave(_runners(config, clip, prompt_boxes(clip.boxes, count, frame_size), sources, meta,
                                       ahead), config.repeats)
            for count in config.objects}


def encode_ahead_name(mode: str, label: str) -> str:
    """The onnxruntime contestant with `TrackerConfig.encode_ahead` on the export labelled `label`."""
    return contestant_name("onnxruntime", mode, f"{label} {ENCODE_AHEAD_LABEL}".strip())


def _speedups_encode_ahead(config: BenchConfig, labels: dict[str, Path],
                           contestants: dict[str, dict]) -> dict[str, float]:
    """Per encode-ahead contestant: its serial twin's ms/frame p50 (same export and mode, `threads`
    per session) over its own."""
    def p50(name: str) -> float:
        return contestants[name]["ms_per_frame"]["p50"]

    return {encode_ahead_name(mode, label): p50(contestant_name("onnxruntime", mode, label))
            / p50(encode_ahead_name(mode, label)) for label in labels for mode in config.modes}


def _frame_step_name(label: str) -> str:
    """The torch contestant with `TrackerConfig.frame_step` on the export labelled `label` (SAM 2 mode)."""
    return contestant_name("torch", "sam2", f"{label} {FRAME_STEP_LABEL}".strip())


def _capture_frame_steps(config: BenchConfig, sources: dict[tuple[str, str], ModelSource]) -> dict[str, str]:
    """Capture the torch backend's frame step for every object count before any pass (so no pass
    pays for a capture); {contestant: "not built: reason"} when a capture fails, else {}."""
    for (backend, label), source in sources.items():
        if backend != "torch":
            continue
        try:
            for count in config.objects:
                source.backend.frame_step(count)
        except Exception as error:  # a CUDA graph capture fails in many ways (an op that syncs, a driver)
            return {_frame_step_name(label): f"not built: {type(error).__name__}: {str(error).splitlines()[0][:200]}"}
    return {}


def _stage_costs(export: Path, peaks: dict[str, float], bandwidth: float, objects: int) -> dict[str, dict]:
    """Per stage of `export`: cost and floor against the peak of its precision (cost_model.stage_cost)."""
    manifest = load_manifest(export)
    symbols = {"prompt_tokens": TRACKING_PROMPT_TOKENS, "objects": objects}
    return {stage: stage_cost(manifest.stage_file(stage), manifest.stage_precision(stage), peaks, bandwidth, symbols)
            for stage in manifest.content["stages"]}


def _summarize_contestant(results: ContestantResults, costs: dict[str, dict]) -> dict:
    frame = summarize(results.samples())
    stages = {key: summarize(results.samples(key)) for key in results.runs[0].stage_ms}
    summary = {
        "ms_per_frame": frame.as_dict(),
        "fps": 1e3 / frame.p50,
        "first_mask_ms": summarize([run.first_mask_ms for run in results.runs]).as_dict(),
        "stages": {key: stats.as_dict() for key, stats in stages.items()},
        "resident_mb_by_frame": [round(b / 2**20, 2) for b in results.runs[-1].resident_bytes],
    }
    syncs = [count for run in results.runs for count in run.syncs]
    if syncs:
        summary["host_syncs_per_frame"] = summarize(syncs).as_dict()
    if ORCHESTRATION in stages:
        summary["orchestration_fraction"] = stages[ORCHESTRATION].p50 / frame.p50
    summary["stage_efficiency"] = {stage: stage_efficiency(cost, stages[stage].p50)
                                   for stage, cost in costs.items() if stage in stages}
    return summary


def _speedups(contestants: dict[str, dict]) -> dict[str, float]:
    """Meta's ms/frame p50 over each of ours (empty without Meta's predictor)."""
    if META not in contestants:
        return {}
    meta_ms = contestants[META]["ms_per_frame"]["p50"]
    return {name: meta_ms / summary["ms_per_frame"]["p50"] for name, summary in contestants.items() if name != META}


def _speedups_vs_first_export(config: BenchConfig, labels: dict[str, Path],
                               contestants: dict[str, dict]) -> dict[str, float]:
    """Per contestant of ours: the first export's ms/frame p50 (same backend and mode) over its own."""
    first = next(iter(labels))
    ratios = {}
    for backend, label, _ in _entrants(config, labels):
        for mode in config.modes:
            name, base = contestant_name(backend, mode, label), contestant_name(backend, mode, first)
            ratios[name] = contestants[base]["ms_per_frame"]["p50"] / contestants[name]["ms_per_frame"]["p50"]
    return ratios


def _by_objects(summaries: dict[int, dict[str, dict]]) -> dict[str, dict]:
    """Per object count: each contestant's ms/frame, FPS, stage p50s and its ratio to the first count."""
    first = next(iter(summaries.values()))
    return {
        str(count): {
            "contestants": {
                name: {"ms_per_frame": summary["ms_per_frame"], "fps": summary["fps"],
                       "stages_p50": {stage: stats["p50"] for stage, stats in summary["stages"].items()},
                       "vs_first_count": summary["ms_per_frame"]["p50"] / first[name]["ms_per_frame"]["p50"],
                       **({"host_syncs_per_frame_p50": summary["host_syncs_per_frame"]["p50"]}
                          if "host_syncs_per_frame" in summary else {})}
                for name, summary in contestants.items()
            },
            "speedup_vs_sam2": _speedups(contestants),
        }
        for count, contestants in summaries.items()
    }


def _clip(config: BenchConfig, scratch: Path) -> BenchClip:
    if config.video is None:
        return synthetic_clip(scratch / "clip", config.frames, config.clip_size, config.seed)
    if config.box is None:
        raise ConfigError(f"bench --video {config.video}: give --box x0 y0 x1 y1 for its first frame")
    return video_clip(scratch / "clip", config.video, config.frames, [config.box])


def _measure_peaks(threads: int, suffix: str = "") -> dict[str, float]:
    """FP32 MatMul (GFLOP/s) and u8s8 MatMulInteger (GOP/s) peaks, 2048^3 at `threads`: median and best
    pass, keys ending in `suffix`."""
    peaks = {}
    for name, measure_peak in (("matmul_gflops", measure_matmul_peak), ("u8s8_gops", measure_u8s8_peak)):
        measured = measure_peak(threads=threads)
        peaks.update({f"{name}_median{suffix}": measured.gflops_median, f"{name}_best{suffix}": measured.gflops_best})
    return peaks


def _used_peaks(config: BenchConfig, peak: dict[str, float]) -> tuple[dict[str, float], float]:
    """({"fp32": GFLOP/s, "u8s8": GOP/s}, GB/s) for the floors: the injected figures, else the best
    pass of either measurement (a shared machine's noise only ever slows a MatMul down)."""
    fp32, bandwidth = config.device_peak or (max(peak["matmul_gflops_best"], peak["matmul_gflops_best_after"]), 20.0)
    u8s8 = config.u8s8_peak or max(peak["u8s8_gops_best"], peak["u8s8_gops_best_after"])
    return {"fp32": fp32, "u8s8": u8s8}, bandwidth


def _measure_all(config: BenchConfig) -> tuple[dict[int, dict[str, ContestantResults]], dict[str, float], dict[str, str]]:
    """The contestants' passes, with the peaks measured before and after them; contestants not built, with why."""
    peak = _measure_peaks(config.threads)
    not_built: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="mqc-bench-") as scratch_name:
        results = measure(config, _clip(config, Path(scratch_name)), Path(scratch_name), not_built)
    peak.update(_measure_peaks(config.threads, "_after"))
    return results, peak, not_built


def _summaries(config: BenchConfig, labels: dict[str, Path], results: dict[int, dict[str, ContestantResults]],
               costs: dict[int, dict[str, dict]]) -> dict[int, dict[str, dict]]:
    """Per object count and contestant: its summary, its stages costed from its own export (Meta's
    predictor and torch: the first export's). ConfigError when a contestant has no per-frame sample."""
    for name, result in ((name, result) for by_name in results.values() for name, result in by_name.items()):
        if not result.samples():
            raise ConfigError(f"bench: {name} emitted no frame one at a time in {config.frames} frames (MQC mode "
                              "holds the first frames back for TMCC's window): give more --frames")
    export_of = {contestant_name(backend, mode, label): label
                 for backend, label, _ in _entrants(config, labels) for mode in config.modes}
    export_of.update({encode_ahead_name(mode, label): label for label in labels for mode in config.modes})
    first = next(iter(labels))
    return {count: {name: _summarize_contestant(result, costs[count][export_of.get(name, first)])
                    for name, result in by_name.items()} for count, by_name in results.items()}


def run_benchmark(config: BenchConfig) -> dict:
    """Measure every contestant, write R/report.json, R/report.md and the plots; return the report."""
    from mqc_edge.benchmarks.report import write_report

    check_device(config)
    labels = export_labels(config)
    results, peak, not_built = _measure_all(config)
    peaks, bandwidth = _used_peaks(config, peak)
    peak.update(used_gflops=peaks["fp32"], used_u8s8_gops=peaks["u8s8"], used_gbps=bandwidth)
    costs = {count: {label: _stage_costs(path, peaks, bandwidth, count) for label, path in labels.items()}
             for count in config.objects}
    summaries = _summaries(config, labels, results, costs)
    headline, first = config.objects[0], next(iter(labels))
    report = {
        "config": {"model_dir": str(config.model_dir), "modes": list(config.modes), "objects": list(config.objects),
                   "frames": config.frames, "repeats": config.repeats, "threads": config.threads,
                   "device": config.device, "precision": config.precision,
                   "clip": str(config.video or "synthetic"), "machine": platform.processor() or platform.machine()},
        "peak": peak,
        "stage_costs": costs[headline][first],
        "contestants": summaries[headline],
        "peak_resident_mb": peak_resident_bytes() / 2**20,
    }
    if config.variants:
        report["exports"] = {label: str(path) for label, path in labels.items()}
        report["stage_costs_by_export"] = costs[headline]
        report["speedup_vs_first_export"] = _speedups_vs_first_export(config, labels, summaries[headline])
    if config.encode_ahead:
        report["speedup_encode_ahead"] = _speedups_encode_ahead(config, labels, summaries[headline])
    if config.vs_sam2:
        report["speedup_vs_sam2"] = _speedups(summaries[headline])
    if len(config.objects) > 1:
        report["by_objects"] = _by_objects(summaries)
    if not_built:
        report["not_built"] = not_built
    write_report(report, config.out_dir)
    return report
