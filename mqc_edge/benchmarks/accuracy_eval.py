"""How good is the model? J&F of named tracking variants on a dataset, one backend, one report.

`mqc-edge eval --model M --gt D --variants ...` runs each variant over every expression of D
with the torch-free runtime and scores it with the referring protocol (data/evaluate.py): the
model card's tables (docs/model_card.md) and the ablation of CroBIM-V's Table II come from here.
The flow baseline needs no model: it carries the frame-0 ground-truth mask with optical flow.
With `encode_ahead` (`--encode-ahead`) every model variant runs with `TrackerConfig.encode_ahead`:
the same masks (runtime/encode_ahead.py); its ms/frame is then the overlapped frame's. It is not
faster at 256 px on this 2-core machine: 38.7 / 40.3 s against 36.8 / 40.7 s serially with 2
threads for the 20 test videos (twenty-first session, docs/benchmarks.md "Encode-ahead").

```
R/predictions/<variant>/<video>/<exp_id>/<frame>.png   0/255 masks
R/metrics/<variant>/metrics.json                        data/evaluate.py report
R/accuracy.json, R/accuracy.md                          one row per variant
```
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

from mqc_edge.atomic import write_text_atomically
from mqc_edge.data.dataset import RVOSDataset
from mqc_edge.data.evaluate import evaluate_predictions
from mqc_edge.errors import ConfigError
from mqc_edge.runtime.config import TrackerConfig
from mqc_edge.runtime.model_source import load_model
from mqc_edge.runtime.roi import RoiConfig, new_tracker

METRICS = ("J&F", "J", "F", "J_recall", "F_recall", "J_decay", "F_decay")


@dataclass(frozen=True)
class Variant:
    """One row: how objects are prompted on frame 0 and how they are tracked."""

    description: str
    prompt: str  # "text" (the expression), "box" (the referent's frame-0 box), "gt-mask" (flow baseline)
    tracker: TrackerConfig | None  # None: the flow baseline, no model
    roi: RoiConfig | None = None  # crop-and-zoom for tiny objects (runtime/roi.py, `run --roi auto`)


VARIANTS = {
    "mqc": Variant("MQC-SAM: text start, TMCC + DAMI (full)", "text", TrackerConfig(mode="mqc")),
    "mqc-text-single": Variant("MQC-SAM, text start from the single-mask token (text_start_multimask off)", "text",
                               TrackerConfig(mode="mqc", text_start_multimask=False)),
    "mqc-no-tmcc": Variant("text start, DAMI memory, no TMCC (+DAMI)", "text", TrackerConfig(mode="mqc", tmcc=None)),
    "sam2-text": Variant("text start, SAM 2 memory only", "text", TrackerConfig(mode="sam2")),
    "sam2-box": Variant("SAM 2 mode from the frame-0 box", "box", TrackerConfig(mode="sam2")),
    "sam2-box-roi": Variant("SAM 2 mode from the frame-0 box, tiny objects on crops (--roi auto)", "box",
                            TrackerConfig(mode="sam2"), RoiConfig()),
    "flow-gt-mask": Variant("baseline: frame-0 ground-truth mask carried by DIS flow", "gt-mask", None),
}
"""Named variants; the model card's ablation rows are sam2-text, mqc-no-tmcc and mqc."""


@dataclass(frozen=True)
class AccuracyEvalConfig:
    """What to measure; the CLI builds it."""

    model_dir: Path  # an `mqc-edge export` directory
    dataset: Path
    out_dir: Path
    variants: tuple[str, ...]
    backend: str = "onnxruntime"
    split: str | None = None
    threads: int | None = None  # per onnxruntime session; None: the backend's default, 1 with encode_ahead
    encode_ahead: bool = False  # every model variant with TrackerConfig.encode_ahead (onnxruntime CPU only)


def check_variants(names: tuple[str, ...], encode_ahead: bool = False) -> None:
    """ConfigError naming the known variants when any of `names` is not one, or naming the variants
    that cannot run with `encode_ahead` (crop-and-zoom re-encodes its own windows every frame)."""
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        raise ConfigError(f"eval variants: unknown {unknown}; known: {sorted(VARIANTS)}")
    serial_only = [name for name in names if VARIANTS[name].roi is not None]
    if encode_ahead and serial_only:
        raise ConfigError(f"eval --encode-ahead: variants {serial_only} track on crops and run only serially; "
                          "leave them out or drop --encode-ahead")


def load_variant_source(config: AccuracyEvalConfig):
    """The `ModelSource` the model variants of `config` run on (None when only the flow baseline is
    asked for); with `encode_ahead`, threads None means 1 per session (the two stages in flight share
    the cores: docs/benchmarks.md, "Encode-ahead")."""
    if not any(VARIANTS[name].tracker is not None for name in config.variants):
        return None
    threads = 1 if config.encode_ahead and config.threads is None else config.threads
    return load_model(config.model_dir, config.backend, threads=threads)


def run_accuracy_eval(config: AccuracyEvalConfig) -> dict:
    """Every variant over the dataset; writes R/accuracy.json and R/accuracy.md."""
    check_variants(config.variants, config.encode_ahead)
    dataset = RVOSDataset.load(config.dataset, split=config.split)
    source = load_variant_source(config)
    rows = {name: variant_row(config, dataset, name, source) for name in config.variants}
    report = {"model_dir": str(config.model_dir), "dataset": str(config.dataset), "backend": config.backend,
              "encode_ahead": config.encode_ahead,
              "videos": len(dataset.videos), "expressions": sum(len(v.expressions) for v in dataset.videos.values()),
              "variants": rows}
    write_text_atomically(config.out_dir / "accuracy.json", json.dumps(report, indent=1) + "\n")
    write_text_atomically(config.out_dir / "accuracy.md", format_accuracy(report))
    return report


def variant_row(config: AccuracyEvalConfig, dataset: RVOSDataset, name: str, source) -> dict:
    """Segment `dataset` (the frames the model sees) with variant `name`, score against config.dataset."""
    from mqc_edge.benchmarks.flow_baseline import predict_flow_baseline

    variant = VARIANTS[name]
    pred_root = config.out_dir / "predictions" / name
    started = time.perf_counter()
    if variant.tracker is None:
        frames = predict_flow_baseline(dataset, pred_root)
    else:
        frames = _predict(source, dataset, variant, pred_root, config.encode_ahead)
    elapsed = time.perf_counter() - started
    report = evaluate_predictions(pred_root, config.dataset, config.out_dir / "metrics" / name, split=config.split)
    row = {"description": variant.description, **{key: report[key] for key in METRICS},
           "frames": frames, "ms_per_frame": 1e3 * elapsed / max(frames, 1)}
    if "per_category" in report:
        row["per_category"] = {category: {"J&F": one["J&F"], "expressions": one["expressions"]}
                               for category, one in report["per_category"].items()}
    return row


def _predict(source, dataset: RVOSDataset, variant: Variant, pred_root: Path, encode_ahead: bool) -> int:
    """Every expression of every video with the variant's tracker (all of a video's expressions in one);
    returns the video frames segmented."""
    from mqc_edge.benchmarks.parity_eval import predict_video

    tracking = dataclasses.replace(variant.tracker, encode_ahead=encode_ahead)
    frames = 0
    for video in dataset.videos.values():
        if video.expressions:
            tracker = new_tracker(source.backend, tracking, variant.roi, source.tokenizer, source.text_cache)
            predict_video({"variant": tracker}, dataset, video, variant.prompt, {"variant": pred_root})
            frames += len(video.frames)
    return frames


def format_accuracy(report: dict) -> str:
    """Markdown: one row per variant; then, when the dataset names categories, J&F per category
    (expressions in brackets) per variant."""
    lines = ["| variant | what | " + " | ".join(METRICS) + " | ms/frame |",
             "|---|---|" + "---:|" * (len(METRICS) + 1)]
    for name, row in report["variants"].items():
        values = " | ".join(f"{row[key]:.3f}" for key in METRICS)
        lines.append(f"| {name} | {row['description']} | {values} | {row['ms_per_frame']:.1f} |")
    return "\n".join(lines) + "\n" + _format_categories(report["variants"])


def _format_categories(rows: dict[str, dict]) -> str:
    categorised = {name: row["per_category"] for name, row in rows.items() if "per_category" in row}
    if not categorised:
        return ""
    names = sorted({category for per in categorised.values() for category in per})
    lines = ["", "J&F per category (expressions):", "",
             "| variant | " + " | ".join(name.replace("|", "\\|") for name in names) + " |",
             "|---|" + "---:|" * len(names)]
    for variant, per in categorised.items():
        cells = [f"{per[c]['J&F']:.3f} ({per[c]['expressions']})" if c in per else "-" for c in names]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
