"""Does TMCC improve the frame-0 mask? Text starts of a model on a dataset, calibrated under a grid of
`TMCCConfig` settings, scored against the ground truth.

`python -m mqc_edge.benchmarks.tmcc_probe MODEL --gt D --out R --set max_removed_fraction=0.2,0.7
max_added_fraction=0.5,inf` decodes every expression's text start on its video's frame 0 once
(MQC mode without TMCC: R0 and its logits), reads the next `n_max` frames, then runs
`tmcc.calibrate` (runtime/mqc/tmcc.py) for every combination of the --set values and scores R0 and
the calibrated mask with J (region similarity) on frame 0. The model runs once per video; each
setting costs only the optical flow, so a grid of 20 settings over 95 starts takes about a
minute on one core. TMCC's guards were chosen with it (docs/model_card.md, "TMCC's guards").

```
R/tmcc_probe.json   {"model", "dataset", "starts", "rows": [{"settings", "J_r0", "J_tmcc", "worse",
                     "better", "changed", "calibrated", "stationary", "rejected"}, ...]}
R/tmcc_probe.md     one row per setting
```
A start counts as worse (better) when its calibrated J is more than `CHANGE_J` below (above) R0's.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mqc_edge.atomic import write_text_atomically
from mqc_edge.data.dataset import RVOSDataset
from mqc_edge.data.metrics import region_similarity
from mqc_edge.errors import ConfigError, MqcEdgeError
from mqc_edge.runtime.config import TrackerConfig
from mqc_edge.runtime.mqc.gates import foreground_probability
from mqc_edge.runtime.mqc.tmcc import TMCCConfig, calibrate
from mqc_edge.runtime.multi_tracker import MultiTracker

CHANGE_J = 0.05
"""A calibrated start is counted worse or better than R0 beyond this J difference."""


@dataclass(frozen=True)
class TextStart:
    """One expression's frame-0 text start and what TMCC reads with it."""

    video: str
    exp_id: str
    logits: np.ndarray  # float32 [H, W] frame-size logits of the start, without TMCC
    truth: np.ndarray  # bool [H, W] the referent on frame 0
    frames: list[np.ndarray]  # uint8 [H, W, 3] frame 0 and the next frames TMCC may read


def collect_starts(source, dataset: RVOSDataset, frames_needed: int) -> list[TextStart]:
    """Every expression's text start (MQC mode, no TMCC) with the first `frames_needed` frames of its
    video; a video's expressions are decoded together (one image encoder run)."""
    starts = []
    for video in dataset.videos.values():
        if not video.expressions:
            continue
        frames = [dataset.read_frame(video.name, name) for name in video.frames[:frames_needed]]
        exp_ids = list(video.expressions)
        tracker = MultiTracker(source.backend, TrackerConfig(mode="mqc", tmcc=None), source.tokenizer,
                               source.text_cache)
        results = tracker.start(frames[0], [{"text": video.expressions[exp_id].text} for exp_id in exp_ids])
        for exp_id, per_object in zip(exp_ids, results, strict=True):
            truth = dataset.object_mask(video.name, video.frames[0], video.expressions[exp_id].obj_id)
            starts.append(TextStart(video.name, exp_id, per_object[0].logits, truth, frames))
    return starts


def probe(starts: list[TextStart], config: TMCCConfig) -> dict:
    """J of R0 and of its calibration over `starts`, with counts of worse, better and changed starts
    and of TMCC's outcomes (calibrated, stationary, rejected)."""
    before, after, outcomes, changed = [], [], [], 0
    for start in starts:
        r0 = start.logits > 0
        result = calibrate(r0, foreground_probability(start.logits), start.frames, config)
        before.append(region_similarity(r0, start.truth))
        after.append(region_similarity(result.mask, start.truth))
        outcomes.append("stationary" if result.stationary else "rejected" if result.rejected else "calibrated")
        changed += int(not np.array_equal(result.mask, r0))
    before, after = np.array(before), np.array(after)
    return {"J_r0": float(before.mean()), "J_tmcc": float(after.mean()),
            "worse": int((after < before - CHANGE_J).sum()), "better": int((after > before + CHANGE_J).sum()),
            "changed": changed, **{kind: outcomes.count(kind) for kind in ("calibrated", "stationary", "rejected")}}


def parse_settings(items: list[str]) -> list[dict[str, float | int]]:
    """['name=v1,v2', ...] -> every combination as TMCCConfig overrides (typed like the defaults);
    ConfigError naming the item for an unknown field or a bad value."""
    defaults = TMCCConfig()
    names = {field.name for field in dataclasses.fields(TMCCConfig)}
    axes = []
    for item in items:
        name, _, values = item.partition("=")
        if name not in names or not values:
            raise ConfigError(f"tmcc_probe --set {item!r}: expected NAME=V1,V2,... with NAME a TMCCConfig field")
        kind = type(getattr(defaults, name))
        try:
            axes.append([(name, kind(value)) for value in values.split(",")])
        except ValueError as error:
            raise ConfigError(f"tmcc_probe --set {item!r}: {error}") from None
    return [dict(combination) for combination in itertools.product(*axes)]


def run_probe(model: Path, dataset_root: Path, out_dir: Path, settings: list[dict], threads: int | None = None) -> dict:
    """The defaults, then each setting; writes R/tmcc_probe.json and .md."""
    from mqc_edge.runtime.model_source import load_model

    configs = [dataclasses.replace(TMCCConfig(), **overrides) for overrides in [{}, *settings]]  # checks each
    source = load_model(model, "onnxruntime", threads=threads)
    dataset = RVOSDataset.load(dataset_root)
    starts = collect_starts(source, dataset, max(config.n_max for config in configs) + 1)
    rows = [{"settings": overrides or "defaults", **probe(starts, config)}
            for overrides, config in zip([{}, *settings], configs, strict=True)]
    report = {"model": str(model), "dataset": str(dataset_root), "starts": len(starts), "rows": rows}
    write_text_atomically(out_dir / "tmcc_probe.json", json.dumps(report, indent=1) + "\n")
    write_text_atomically(out_dir / "tmcc_probe.md", format_probe(report))
    return report


def format_probe(report: dict) -> str:
    """Markdown: one row per setting."""
    lines = [f"{report['starts']} text starts; worse / better: calibrated J more than {CHANGE_J} below / above R0's",
             "", "| settings | J R0 | J TMCC | worse | better | changed | calibrated | stationary | rejected |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in report["rows"]:
        settings = row["settings"] if isinstance(row["settings"], str) else \
            " ".join(f"{name}={value}" for name, value in row["settings"].items())
        lines.append(f"| {settings} | {row['J_r0']:.4f} | {row['J_tmcc']:.4f} | {row['worse']} | {row['better']} | "
                     f"{row['changed']} | {row['calibrated']} | {row['stationary']} | {row['rejected']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mqc_edge.benchmarks.tmcc_probe", description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="an `mqc-edge export` directory with the MQC stages")
    parser.add_argument("--gt", type=Path, required=True, help="dataset root (RS-RVOS layout)")
    parser.add_argument("--out", type=Path, required=True, help="report folder")
    parser.add_argument("--set", nargs="*", default=[], metavar="NAME=V1,V2", help="TMCCConfig values to try")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads")
    args = parser.parse_args(argv)
    try:
        report = run_probe(args.model, args.gt, args.out, parse_settings(args.set), args.threads)
    except MqcEdgeError as error:
        print(f"tmcc_probe: error: {error}", file=sys.stderr)
        return 2
    print(format_probe(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
