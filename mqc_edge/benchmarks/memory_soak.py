"""Constant memory over long videos: stream synthetic frames through the onnxruntime Tracker.

Issue 5 item 7: resident memory after 2,000 frames within 5% of that after 200. Frames are
rendered one at a time as the Tracker asks for them (data/synth SceneRenderer), and results are
dropped once counted, so anything that grows is the Tracker's or the backend's. Besides the
process's resident set, every sample records the bytes of the arrays the Tracker's state holds
(memory slots, pointers, gate statistics), which must not change at all once memory is full.

Issue 13 item 5 adds Meta's SAM2VideoPredictor beside it (`--meta-frames N`, benchmarks/meta_memory.py):
once our soak is done, the first N frames of the same scene go through Meta's predictor, whose growth
is reported and plotted next to ours; our verdict never depends on it.

`python -m mqc_edge.benchmarks.memory_soak EXPORT_DIR --frames 2000 --out R` writes R/memory.json
and R/memory.png and exits 1 when the growth is over the tolerance.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mqc_edge.atomic import write_atomically, write_text_atomically
from mqc_edge.benchmarks.clip import box_of
from mqc_edge.benchmarks.memory import resident_bytes, state_array_bytes
from mqc_edge.benchmarks.meta_memory import meta_memory
from mqc_edge.data.synth import random_scene
from mqc_edge.data.synth.scene import SceneRenderer
from mqc_edge.errors import ConfigError, MqcEdgeError
from mqc_edge.runtime.config import TrackerConfig
from mqc_edge.runtime.model_source import load_model
from mqc_edge.runtime.tracker import Tracker


@dataclass(frozen=True)
class SoakConfig:
    """What to stream; `main` builds it from the command line."""

    export_dir: Path  # an `mqc-edge export` directory, run on onnxruntime CPU
    out_dir: Path
    frames: int = 2000  # issue 5 item 7
    baseline_frame: int = 200  # issue 5 item 7: growth is measured from here to the last frame
    every: int = 50  # frames between two samples
    size: int = 256  # side of the synthetic frames, px (the 256 px SAM 2.1 tiny export of the soak)
    mode: str | None = None  # None: "mqc" when the model has MQC stages, else "sam2"
    threads: int = 2  # onnxruntime intra-op threads (this machine has 2 cores)
    seed: int = 0
    tolerance: float = 0.05  # issue 5 item 7: within 5 %
    meta_frames: int = 0  # issue 13 item 5: Meta's predictor over the first N frames (its stated cap); 0: off
    encode_ahead: bool = False  # the Tracker with TrackerConfig.encode_ahead (one frame's features more in flight)

    def __post_init__(self) -> None:
        if not 1 <= self.baseline_frame < self.frames:
            raise ConfigError(f"baseline frame: expected 1 <= it < frames ({self.frames}), got {self.baseline_frame}")
        if self.every < 1:
            raise ConfigError(f"every: expected >= 1 frame between samples, got {self.every}")
        if self.meta_frames and not 2 * self.every <= self.meta_frames <= self.frames:
            # two samples at least for a slope; the scene is rendered `frames` long
            raise ConfigError(f"meta frames: expected 0 (off) or 2 * every ({2 * self.every}) <= it <= frames "
                              f"({self.frames}), got {self.meta_frames}")


def _synthetic_stream(config: SoakConfig) -> tuple[SceneRenderer, tuple[float, float, float, float]]:
    """A random scene as long as the soak, and the box of its first referent on frame 0."""
    rng = np.random.default_rng(config.seed)
    scene = random_scene(rng, (config.size, config.size), config.frames)
    renderer = SceneRenderer(scene, config.seed)
    ids = renderer.frame(0)[1]
    return renderer, box_of(ids == renderer.expressions(ids)[0].obj_id)


def soak(config: SoakConfig) -> dict:
    """Stream `config.frames` frames, sample memory, write R/memory.json and R/memory.png; then,
    when `meta_frames` is set, the first of them through Meta's predictor (after ours, so that
    its tensors are not in our samples)."""
    report = _soak_tracker(config)
    if config.meta_frames:
        renderer, box = _synthetic_stream(config)
        frames = (renderer.frame(t)[0] for t in range(config.meta_frames))
        report["meta"] = meta_memory(config.export_dir, frames, box, config.every, config.threads)
    _write(report, config.out_dir)
    return report


def _soak_tracker(config: SoakConfig) -> dict:
    """Our Tracker over every frame; the report without Meta's block."""
    source = load_model(config.export_dir, "onnxruntime", threads=config.threads)
    mode = config.mode or ("mqc" if source.backend.geometry.mqc is not None else "sam2")
    tracker = Tracker(source.backend, TrackerConfig(mode=mode, encode_ahead=config.encode_ahead), source.tokenizer,
                      source.text_cache)
    renderer, box = _synthetic_stream(config)
    samples, began = [], time.perf_counter()
    for t in range(config.frames):
        rgb = renderer.frame(t)[0]
        if t == 0:
            tracker.start(rgb, box=box)
        else:
            tracker.step(rgb)
        if (t + 1) % config.every == 0 or t + 1 in (config.baseline_frame, config.frames):
            samples.append({"frame": t + 1, "resident_bytes": resident_bytes(),
                            "state_bytes": state_array_bytes(tracker.state)})
    tracker.finish()
    return _report(config, mode, samples, time.perf_counter() - began)


def _report(config: SoakConfig, mode: str, samples: list[dict], seconds: float) -> dict:
    by_frame = {sample["frame"]: sample for sample in samples}
    baseline, last = by_frame[config.baseline_frame], by_frame[config.frames]
    growth = last["resident_bytes"] / baseline["resident_bytes"] - 1.0
    return {
        "config": {key: str(value) if isinstance(value, Path) else value
                   for key, value in dataclasses.asdict(config).items()},
        "mode": mode,
        "samples": samples,
        "baseline_resident_mib": baseline["resident_bytes"] / 2**20,
        "final_resident_mib": last["resident_bytes"] / 2**20,
        "growth": growth,
        "within_tolerance": abs(growth) <= config.tolerance,
        "state_bytes_constant": baseline["state_bytes"] == last["state_bytes"],
        "ms_per_frame": 1e3 * seconds / config.frames,
    }


def _write(report: dict, out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    write_text_atomically(out_dir / "memory.json", json.dumps(report, indent=1) + "\n")
    figure, axes = plt.subplots(figsize=(7, 4))
    _plot_resident(axes, report["samples"], "mqc-edge Tracker (onnxruntime)")
    if "meta" in report:
        _plot_resident(axes, report["meta"]["samples"], f"Meta SAM2VideoPredictor (first {report['meta']['frames']} frames)")
    baseline, tolerance = report["baseline_resident_mib"], report["config"]["tolerance"]
    axes.axhspan(baseline * (1 - tolerance), baseline * (1 + tolerance), alpha=0.15,
                 label=f"frame {report['config']['baseline_frame']} +- {100 * tolerance:.0f} %")
    axes.set_xlabel("frames streamed")
    axes.set_ylabel("resident memory, MiB")
    axes.set_title(f"{report['mode']} mode, {report['config']['size']} px, growth {100 * report['growth']:+.2f} %")
    axes.legend(fontsize=8)
    figure.tight_layout()
    write_atomically(out_dir / "memory.png", lambda tmp: figure.savefig(tmp, dpi=100))
    plt.close(figure)


def _plot_resident(axes, samples: list[dict], label: str) -> None:
    axes.plot([sample["frame"] for sample in samples], [sample["resident_bytes"] / 2**20 for sample in samples],
              marker=".", label=label)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mqc_edge.benchmarks.memory_soak", description=__doc__.splitlines()[0])
    parser.add_argument("export_dir", type=Path, help="an `mqc-edge export` directory")
    parser.add_argument("--out", type=Path, required=True, help="report folder")
    defaults = SoakConfig(Path(), Path())
    for name in ("frames", "baseline_frame", "every", "size", "threads", "seed"):
        parser.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(defaults, name))
    parser.add_argument("--mode", choices=("mqc", "sam2"), default=None)
    parser.add_argument("--meta-frames", type=int, default=defaults.meta_frames,
                        help="also stream the first N frames through Meta's SAM2VideoPredictor (needs torch, sam2)")
    parser.add_argument("--encode-ahead", action="store_true",
                        help="the Tracker with encode-ahead (docs/benchmarks.md); give --threads 1 for its 1-thread sessions")
    args = parser.parse_args(argv)
    try:
        report = soak(SoakConfig(args.export_dir, args.out, args.frames, args.baseline_frame, args.every, args.size,
                                 args.mode, args.threads, args.seed, meta_frames=args.meta_frames,
                                 encode_ahead=args.encode_ahead))
    except MqcEdgeError as error:
        print(f"memory_soak: error: {error}", file=sys.stderr)
        return 2
    verdict = "within" if report["within_tolerance"] else "NOT within"
    print(f"resident memory at frame {args.frames}: {report['final_resident_mib']:.1f} MiB, "
          f"{100 * report['growth']:+.2f} % of frame {args.baseline_frame} ({report['baseline_resident_mib']:.1f} MiB): "
          f"{verdict} {100 * defaults.tolerance:.0f} %; tracker state bytes "
          f"{'constant' if report['state_bytes_constant'] else 'CHANGED'}; {report['ms_per_frame']:.1f} ms/frame")
    if "meta" in report:
        _print_meta(report["meta"])
    return 0 if report["within_tolerance"] and report["state_bytes_constant"] else 1


def _print_meta(meta: dict) -> None:
    print(f"Meta SAM2VideoPredictor, first {meta['frames']} frames: {meta['before_init_resident_mib']:.1f} MiB before "
          f"init_state, {meta['after_init_resident_mib']:.1f} MiB after, {meta['final_resident_mib']:.1f} MiB at the "
          f"last frame; {meta['growth_mib_per_1000_frames']:+.1f} MiB per 1000 frames; {meta['ms_per_frame']:.1f} ms/frame")


if __name__ == "__main__":
    sys.exit(main())
