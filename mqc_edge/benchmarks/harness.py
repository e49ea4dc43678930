"""`mqc-edge bench`: every contestant on the same clip, weights and size, in one process.

Contestants run interleaved (repeat 1 of each, then repeat 2 of each, ...) after one warm-up
pass each, so a slow drift of the machine (thermal, a neighbour process) spreads over all of
them instead of biasing whichever ran last. Ratios are only ever taken between contestants of
the same run.
"""

from __future__ import annotations

import platform
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


from mqc_edge.benchmarks.clip import BenchClip, synthetic_clip, video_clip
from mqc_edge.benchmarks.contestant import ContestantRun
from mqc_edge.benchmarks.cost_model import graph_cost
from mqc_edge.benchmarks.memory import peak_resident_bytes
from mqc_edge.benchmarks.peak import measure_matmul_peak
from mqc_edge.benchmarks.stats import summarize
from mqc_edge.benchmarks.tracker_contestant import ORCHESTRATION, run_tracker
from mqc_edge.contract import TRACKING_PROMPT_TOKENS
from mqc_edge.errors import ConfigError
from mqc_edge.runtime.config import TrackerConfig
from mqc_edge.runtime.manifest import load_manifest
from mqc_edge.runtime.model_source import load_model_source
from mqc_edge.runtime.tracker import Tracker

META = "meta-sam2-predictor"


@dataclass(frozen=True)
class BenchConfig:
    """What to measure; the CLI builds it."""

    model_dir: Path  # an `mqc-edge export` directory: graphs for the cost model, weights for torch and Meta
    out_dir: Path
    backends: tuple[str, ...] = ("onnxruntime",)  # our runtime's backends under test
    vs_pytorch: bool = False  # add the torch reference pipeline (same Tracker, torch stages)
    vs_sam2: bool = False  # add Meta's SAM2VideoPredictor (box prompt, same weights and size)
    mode: str = "sam2"  # head-to-head is SAM 2 mode; MQC mode is reported beside it
    frames: int = 24  # the clip length
    repeats: int = 3  # interleaved passes per contestant after one warm-up pass
    threads: int = 2  # intra-op threads of every contestant (this machine has 2 cores)
    video: Path | None = None  # a user's video; default a synthetic satellite clip
    box: tuple[float, float, float, float] | None = None  # prompt box for a user's video
    clip_size: int = 480  # synthetic clip side, px
    seed: int = 0
    device_peak: tuple[float, float] | None = None  # (GFLOP/s, GB/s); default: measured MatMul peak, bandwidth 20 GB/s


@dataclass
class ContestantResults:
    """All measured passes of one contestant (warm-up excluded)."""

    runs: list[ContestantRun] = field(default_factory=list)

    def samples(self, key: str | None = None) -> list[float]:
        if key is None:
            return [ms for run in self.runs for ms in run.frame_ms]
        return [ms for run in self.runs for ms in run.stage_ms.get(key, [])]


def _tracker_factory(config: BenchConfig, backend: str) -> Callable[[], Tracker]:
    source = load_model_source(config.model_dir, backend=backend, threads=config.threads)
    tracker_config = TrackerConfig(mode=config.mode)
    return lambda: Tracker(source.backend, tracker_config, source.tokenizer, source.text_cache)


def _meta_runner(config: BenchConfig, clip: BenchClip, scratch: Path) -> Callable[[], ContestantRun]:
    import torch

    from mqc_edge.benchmarks.meta_predictor import build_meta_predictor, meta_checkpoint, run_meta_predictor

    torch.set_num_threads(config.threads)
    manifest = load_manifest(config.model_dir)
    checkpoint = meta_checkpoint(manifest.file("weights"), scratch / "meta_sam2.pt")
    predictor = build_meta_predictor(checkpoint, manifest.content["model"]["sam2_variant"], manifest.geometry.image_size)
    return lambda: run_meta_predictor(predictor, clip.folder, clip.boxes[:1])


def _contestants(config: BenchConfig, clip: BenchClip, scratch: Path) -> dict[str, Callable[[], ContestantRun]]:
    prompt = {"box": clip.boxes[0]}
    names = list(config.backends) + (["torch"] if config.vs_pytorch else [])
    runners: dict[str, Callable[[], ContestantRun]] = {}
    for backend in names:
        make_tracker = _tracker_factory(config, backend)
        runners[f"mqc-edge/{backend}"] = lambda make=make_tracker, name=backend: run_tracker(
            f"mqc-edge/{name}", make(), clip.frames, prompt)
    if config.vs_sam2:
        runners[META] = _meta_runner(config, clip, scratch)
    return runners


def measure(config: BenchConfig, clip: BenchClip, scratch: Path) -> dict[str, ContestantResults]:
    """One warm-up pass per contestant (not recorded), then `repeats` interleaved passes."""
    runners = _contestants(config, clip, scratch)
    for run in runners.values():
        run()
    results = {name: ContestantResults() for name in runners}
    for _ in range(config.repeats):
        for name, run in runners.items():
            results[name].runs.append(run())
    return results


def _stage_costs(config: BenchConfig, peak_gflops: float, bandwidth: float) -> dict[str, dict]:
    manifest = load_manifest(config.model_dir)
    costs = {}
    for stage in manifest.content["stages"]:
        cost = graph_cost(manifest.stage_file(stage), {"prompt_tokens": TRACKING_PROMPT_TOKENS})
        costs[stage] = {"gflop": cost.flops / 1e9, "gflop_compute": cost.flops_compute / 1e9,
                        "mbytes_min": cost.bytes_min / 1e6, "floor_ms": cost.floor_ms(peak_gflops, bandwidth)}
    return costs


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
    if ORCHESTRATION in stages:
        summary["orchestration_fraction"] = stages[ORCHESTRATION].p50 / frame.p50
    summary["stage_efficiency"] = {
        stage: {"achieved_gflops": cost["gflop"] / (stages[stage].p50 / 1e3),
                "fraction_of_floor": cost["floor_ms"] / stages[stage].p50}
        for stage, cost in costs.items() if stage in stages
    }
    return summary


def run_benchmark(config: BenchConfig) -> dict:
    """Measure every contestant, write R/report.json, R/report.md and the plots; return the report."""
    from mqc_edge.benchmarks.report import write_report

    if config.mode not in ("sam2", "mqc"):
        raise ConfigError(f"bench mode: expected 'sam2' or 'mqc', got {config.mode!r}")
    peak = measure_matmul_peak(threads=config.threads)
    peak_gflops, bandwidth = config.device_peak or (peak.gflops_median, 20.0)
    costs = _stage_costs(config, peak_gflops, bandwidth)
    with tempfile.TemporaryDirectory(prefix="mqc-bench-") as scratch_name:
        scratch = Path(scratch_name)
        if config.video is None:
            clip = synthetic_clip(scratch / "clip", config.frames, config.clip_size, config.seed)
        elif config.box is None:
            raise ConfigError(f"bench --video {config.video}: give --box x0 y0 x1 y1 for its first frame")
        else:
            clip = video_clip(scratch / "clip", config.video, config.frames, [config.box])
        results = measure(config, clip, scratch)
    contestants = {name: _summarize_contestant(result, costs) for name, result in results.items()}
    report = {
        "config": {"model_dir": str(config.model_dir), "mode": config.mode, "frames": config.frames,
                   "repeats": config.repeats, "threads": config.threads, "clip": str(config.video or "synthetic"),
                   "machine": platform.processor() or platform.machine()},
        "peak": {"matmul_gflops_median": peak.gflops_median, "matmul_gflops_best": peak.gflops_best,
                 "used_gflops": peak_gflops, "used_gbps": bandwidth},
        "stage_costs": costs,
        "contestants": contestants,
        "peak_resident_mb": peak_resident_bytes() / 2**20,
    }
    if META in contestants:
        meta_ms = contestants[META]["ms_per_frame"]["p50"]
        report["speedup_vs_sam2"] = {name: meta_ms / summary["ms_per_frame"]["p50"]
                                     for name, summary in contestants.items() if name != META}
    write_report(report, config.out_dir)
    return report
