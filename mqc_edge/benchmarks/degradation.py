"""Does the model hold up under what orbit imagery has every day? J&F per degradation and strength.

`mqc-edge eval --model M --gt D --degrade noise,blur,lowlight,haze,clouds,timevarying` runs
the variants of `accuracy_eval` on D clean and then under each degradation kind at each strength
(RobustPVOS/MoGA suite, DESIGN.md section 7). Only the frames the model sees are degraded
(`data/synth/degrade.py: degrade_frame`, seeded per video and frame); the ground truth is D's.

Default strengths, three per kind, in physical units:
- noise: Gaussian sensor noise, std 8 / 16 / 32 grey levels (8-bit).
- blur: Gaussian blur, std 1 / 2 / 4 px.
- lowlight: exposure gain 0.5 / 0.25 / 0.1 (strength = light lost 0.5 / 0.75 / 0.9), rounded to
  8 bits, so the darkest level keeps about 25 grey levels.
- haze: transmission 0.7 / 0.5 / 0.3 toward haze grey (strength = 1 - transmission).
- clouds: 10 / 25 / 50 % of the frame under cloud at least half opaque, the deck drifting at
  ~0.8 px/frame; a target under a cloud core is invisible but stays in the ground truth.
- timevarying: level i = the five kinds in turn at their i-th strength, each rising from nothing
  and falling back (overlapping its neighbours) with the first and last frames clean: a good
  start, then a memory written through degraded frames.

```
R/conditions/<condition>/predictions/<variant>/...   masks (accuracy_eval layout)
R/conditions/<condition>/metrics/<variant>/...       data/evaluate.py report
R/degradation.json, R/degradation.md                 one row per (condition, variant)
R/degradation.png                                    J&F against strength, a panel per kind
```
"""

from __future__ import annotations

import dataclasses
import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from mqc_edge.atomic import write_atomically, write_text_atomically
from mqc_edge.benchmarks.accuracy_eval import AccuracyEvalConfig, check_variants, load_variant_source, variant_row
from mqc_edge.data.dataset import RVOSDataset
from mqc_edge.data.synth.degrade import KINDS, FrameDegradation, degrade_frame
from mqc_edge.errors import ConfigError

TIMEVARYING = "timevarying"
SUITE_KINDS = (*KINDS, TIMEVARYING)
DEFAULT_STRENGTHS = {"noise": (8.0, 16.0, 32.0), "blur": (1.0, 2.0, 4.0), "lowlight": (0.5, 0.75, 0.9),
                     "haze": (0.3, 0.5, 0.7), "clouds": (0.1, 0.25, 0.5)}
"""Per kind, in FrameDegradation's units; chosen to span mild to severe (see the module docstring)."""
AXIS_LABELS = {"noise": "noise std (grey levels)", "blur": "blur std (px)", "lowlight": "light lost (1 - gain)",
               "haze": "haze (1 - transmission)", "clouds": "cloud cover (fraction of frame)",
               TIMEVARYING: "level (all kinds in turn)"}
METRICS = ("J&F", "J", "F")


@dataclass(frozen=True)
class DegradationEvalConfig:
    """What to measure; the CLI builds it. `accuracy.out_dir` is the report folder R."""

    accuracy: AccuracyEvalConfig  # model, dataset, variants, backend, split, threads
    kinds: tuple[str, ...]  # from SUITE_KINDS
    strengths: tuple[tuple[str, tuple[float, ...]], ...] = tuple(DEFAULT_STRENGTHS.items())
    seed: int = 0  # mixed with each video's name: noise per (video, frame), cloud deck per video


@dataclass(frozen=True)
class Condition:
    """One degraded copy of the dataset: a kind at a level (level 0 = clean)."""

    kind: str  # "clean" or one of SUITE_KINDS
    level: int  # 1.. index into the kind's strengths
    strength: float  # physical value (timevarying: the level)
    degradation: FrameDegradation

    @property
    def name(self) -> str:
        return "clean" if self.kind == "clean" else f"{self.kind}-{self.strength:g}"


class DegradedDataset(RVOSDataset):
    """The dataset as the model sees it under one degradation: frames degraded, annotations as on disk."""

    def __init__(self, dataset: RVOSDataset, degradation: FrameDegradation, seed: int) -> None:
        super().__init__(dataset.root, dataset.videos)
        self.degradation = degradation
        self.seed = seed

    def read_frame(self, video: str, frame: str) -> np.ndarray:
        frames = self.videos[video].frames
        return degrade_frame(super().read_frame(video, frame), self.degradation, frames.index(frame), len(frames),
                             video_seed(self.seed, video))


def video_seed(seed: int, video: str) -> int:
    """A per-video seed that does not depend on which other videos the dataset holds."""
    return seed * 2**32 + zlib.crc32(video.encode())


def parse_kinds(text: str) -> tuple[str, ...]:
    """'noise,blur' -> ('noise', 'blur'); ConfigError naming the valid kinds on an unknown one."""
    kinds = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [kind for kind in kinds if kind not in SUITE_KINDS]
    if unknown or not kinds:
        raise ConfigError(f"eval --degrade: unknown kind {', '.join(unknown) or repr(text)}; "
                          f"valid: {', '.join(SUITE_KINDS)}")
    return kinds


def parse_strengths(items: list[str]) -> tuple[tuple[str, tuple[float, ...]], ...]:
    """['noise=4,8', ...] over DEFAULT_STRENGTHS: each KIND=V1,V2,... replaces that kind's levels."""
    strengths = dict(DEFAULT_STRENGTHS)
    for item in items:
        kind, _, values = item.partition("=")
        if kind not in KINDS:
            raise ConfigError(f"eval --strengths {item!r}: expected KIND=V1,V2,... with KIND one of {', '.join(KINDS)}")
        try:
            strengths[kind] = tuple(float(value) for value in values.split(","))
        except ValueError:
            raise ConfigError(f"eval --strengths {item!r}: strengths must be numbers") from None
        for value in strengths[kind]:
            FrameDegradation(((kind, value),))  # range check, with the kind's allowed interval in the error
    return tuple(strengths.items())


def conditions(config: DegradationEvalConfig) -> list[Condition]:
    """Clean first, then each kind at each of its strengths, in the order given."""
    strengths = dict(config.strengths)
    found = [Condition("clean", 0, 0.0, FrameDegradation(()))]
    for kind in config.kinds:
        if kind != TIMEVARYING:
            found += [Condition(kind, level, value, FrameDegradation(((kind, value),)))
                      for level, value in enumerate(strengths[kind], start=1) if value > 0]
            continue
        levels = {len(strengths[name]) for name in KINDS}
        if len(levels) != 1:
            raise ConfigError(f"eval --degrade {TIMEVARYING}: every kind needs the same number of strengths, "
                              f"got {({name: len(strengths[name]) for name in KINDS})}")
        found += [Condition(kind, level, float(level),
                            FrameDegradation(tuple((name, strengths[name][level - 1]) for name in KINDS), True))
                  for level in range(1, levels.pop() + 1)]
    return found


def run_degradation_eval(config: DegradationEvalConfig, log: Callable[[str], None] = lambda line: None) -> dict:
    """Every variant under every condition; writes R/degradation.{json,md,png} (rewritten after each condition)."""
    accuracy = config.accuracy
    check_variants(accuracy.variants, accuracy.encode_ahead)
    dataset = RVOSDataset.load(accuracy.dataset, split=accuracy.split)
    source = load_variant_source(accuracy)
    report = {"model_dir": str(accuracy.model_dir), "dataset": str(accuracy.dataset), "backend": accuracy.backend,
              "encode_ahead": accuracy.encode_ahead,
              "videos": len(dataset.videos), "frames": sum(len(v.frames) for v in dataset.videos.values()),
              "seed": config.seed, "strengths": {kind: list(values) for kind, values in config.strengths},
              "variants": list(accuracy.variants), "rows": []}
    for condition in conditions(config):
        seen = DegradedDataset(dataset, condition.degradation, config.seed)
        folder = dataclasses.replace(accuracy, out_dir=accuracy.out_dir / "conditions" / condition.name)
        for name in accuracy.variants:
            row = variant_row(folder, seen, name, source)
            report["rows"].append({"kind": condition.kind, "level": condition.level, "strength": condition.strength,
                                   "variant": name, **{key: row[key] for key in METRICS},
                                   "ms_per_frame": row["ms_per_frame"]})
            log(f"{condition.name} {name}: J&F {row['J&F']:.3f}")
        write_degradation_report(report, accuracy.out_dir)
    return report


def write_degradation_report(report: dict, out_dir: Path) -> None:
    """degradation.json, degradation.md and degradation.png under `out_dir`, each written atomically."""
    write_text_atomically(out_dir / "degradation.json", json.dumps(report, indent=1) + "\n")
    write_text_atomically(out_dir / "degradation.md", format_degradation(report))
    plot_degradation(report, out_dir / "degradation.png")


def strength_label(kind: str, strength: float) -> str:
    """The strength as a reader says it: noise std, blur std, gain, transmission, cover."""
    return {"clean": "-", "noise": f"std {strength:g} grey levels", "blur": f"std {strength:g} px",
            "lowlight": f"gain {1 - strength:.2g}", "haze": f"transmission {1 - strength:.2g}",
            "clouds": f"cover {strength:.0%}", TIMEVARYING: f"level {strength:g}"}[kind]


def format_degradation(report: dict) -> str:
    """Markdown: a row per condition, per variant its J&F and the drop from clean."""
    variants = report["variants"]
    clean = {row["variant"]: row["J&F"] for row in report["rows"] if row["kind"] == "clean"}
    by_condition: dict[tuple[str, float], dict[str, float]] = {}
    for row in report["rows"]:
        by_condition.setdefault((row["kind"], row["strength"]), {})[row["variant"]] = row["J&F"]
    lines = ["| degradation | strength | " + " | ".join(f"{name} J&F | {name} drop" for name in variants) + " |",
             "|---|---|" + "---:|---:|" * len(variants)]
    for (kind, strength), scores in by_condition.items():
        cells = " | ".join(f"{scores[name]:.3f} | {clean[name] - scores[name]:+.3f}" if name in scores else "- | -"
                           for name in variants)
        lines.append(f"| {kind} | {strength_label(kind, strength)} | {cells} |")
    return "\n".join(lines) + "\n"


def plot_degradation(report: dict, path: Path) -> None:
    """A panel per kind: J&F against strength (clean at 0), a line per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = list(dict.fromkeys(row["kind"] for row in report["rows"] if row["kind"] != "clean"))
    columns = min(3, max(len(kinds), 1))
    rows_of_panels = max(1, -(-len(kinds) // columns))
    figure, axes = plt.subplots(rows_of_panels, columns, figsize=(4 * columns, 3 * rows_of_panels), squeeze=False)
    for panel, kind in zip(axes.flat, kinds):
        for name in report["variants"]:
            points = sorted((row["strength"], row["J&F"]) for row in report["rows"]
                            if row["variant"] == name and row["kind"] in ("clean", kind))
            panel.plot(*zip(*points), marker="o", label=name)
        panel.set_title(kind)
        panel.set_xlabel(AXIS_LABELS[kind])
        panel.set_ylabel("J&F")
        panel.set_ylim(bottom=0)
        panel.grid(alpha=0.3)
        panel.legend(fontsize=7)
    for panel in list(axes.flat)[len(kinds):]:
        panel.axis("off")
    figure.tight_layout()
    write_atomically(path, lambda tmp: figure.savefig(tmp, dpi=100, format="png"))
    plt.close(figure)
