"""How good is the CroBIM-U uncertainty map, and does weighting memory with it help (issue 21 item 1)?

    python -m mqc_edge.benchmarks.uncertainty_eval --model CKPT --dataset D --out DIR [--plot PNG]

On every expression of dataset D (RS-RVOS layout, e.g. `mqc-edge data synth --seed 7`), the
torch-free Tracker runs MQC mode from the text, once per memory setting (`SETTINGS`: SAM 2's
confidence weighting, the (1 - u) weighting, the boundary uncertainty gate). On the confidence
run it scores u as a detector of the decoder's own per-pixel errors at frame size (mask !=
ground truth): AUROC (Mann-Whitney, numpy ranks), and the same for the normalised logit entropy
(`gates.uncertainty_map`, the head-free baseline); a calibration table (bins of u against the
observed error rate) and plot. J&F per setting follows the DAVIS protocol as `data/evaluate.py`:
frames where the object is annotated, mean per expression, then over expressions.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from mqc_edge.atomic import write_atomically, write_text_atomically
from mqc_edge.data.dataset import RVOSDataset
from mqc_edge.data.metrics import boundary_f, region_similarity
from mqc_edge.runtime.config import TrackerConfig
from mqc_edge.runtime.mqc.gates import uncertainty_map
from mqc_edge.runtime.results import FrameResult
from mqc_edge.runtime.text import TextTokenizer
from mqc_edge.runtime.tracker import Tracker

SETTINGS = {
    "confidence": {},
    "uncertainty_weighted": {"memory_weighting": "uncertainty"},
    "uncertainty_gate_0.5": {"uncertainty_gate": 0.5},
    "uncertainty_gate_0.2": {"uncertainty_gate": 0.2},
}
"""J&F settings: TrackerConfig(mode="mqc") fields of each run; the first is the reference."""


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of `scores` for bool `labels` (any shape, flattened): the
    Mann-Whitney U over positives and negatives, ties counted half (average ranks).
    NaN when either class is empty."""
    scores, labels = np.asarray(scores, np.float64).ravel(), np.asarray(labels, bool).ravel()
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    _, first, counts = np.unique(scores[order], return_index=True, return_counts=True)
    ranks = np.empty(scores.size, np.float64)
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)  # 1-based average rank of each tie group
    u_statistic = ranks[labels].sum() - positives * (positives + 1) / 2.0
    return float(u_statistic / (positives * negatives))


def calibration_table(scores: np.ndarray, labels: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Equal-width bins of `scores` in [0, 1]: pixels, mean score and observed positive rate per
    non-empty bin (a calibrated score lies on the diagonal)."""
    scores, labels = np.asarray(scores, np.float64).ravel(), np.asarray(labels, bool).ravel()
    index = np.minimum((np.clip(scores, 0.0, 1.0) * bins).astype(np.int64), bins - 1)
    counts = np.bincount(index, minlength=bins)
    score_sums = np.bincount(index, weights=scores, minlength=bins)
    positive_sums = np.bincount(index, weights=labels.astype(np.float64), minlength=bins)
    return [{"low": b / bins, "high": (b + 1) / bins, "pixels": int(counts[b]),
             "mean_score": float(score_sums[b] / counts[b]), "error_rate": float(positive_sums[b] / counts[b])}
            for b in range(bins) if counts[b]]


def plot_calibration(table: list[dict[str, float]], path: Path, title: str) -> None:
    """Reliability diagram: observed error rate against mean predicted uncertainty per bin."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axis = plt.subplots(figsize=(4.6, 4.2))
    axis.plot([0, 1], [0, 1], color="grey", linestyle="--", label="calibrated")
    axis.plot([row["mean_score"] for row in table], [row["error_rate"] for row in table], marker="o",
              label="uncertainty head")
    for row in table:
        axis.annotate(f"{row['pixels']:.0e}", (row["mean_score"], row["error_rate"]), fontsize=6,
                      textcoords="offset points", xytext=(3, -8))
    axis.set(xlabel="predicted uncertainty u (bin mean)", ylabel="observed error rate", xlim=(0, 1), ylim=(0, 1),
             title=title)
    axis.legend(loc="upper left")
    figure.tight_layout()
    write_atomically(Path(path), lambda tmp: figure.savefig(tmp, format="png", dpi=100))
    plt.close(figure)


def track(backend, tokenizer: TextTokenizer, frames: list[np.ndarray], text: str, **options) -> list[FrameResult]:
    """One expression through a fresh MQC-mode Tracker; every frame's result, in order."""
    tracker = Tracker(backend, TrackerConfig(mode="mqc", **options), tokenizer)
    results = tracker.start(frames[0], text=text)
    for frame in frames[1:]:
        results += tracker.step(frame)
    return results + tracker.finish()


def jf(results: list[FrameResult], truths: list[np.ndarray]) -> float:
    """(J + F) / 2 averaged over the frames where the object is annotated."""
    values = [0.5 * (region_similarity(r.mask, t) + boundary_f(r.mask, t)) for r, t in zip(results, truths) if t.any()]
    return float(np.mean(values))


def evaluate(backend, dataset: RVOSDataset) -> tuple[dict, list[dict[str, float]]]:
    """The report (AUROCs, J&F and FIFO write counts per setting, sizes) and the head's calibration table."""
    tokenizer = TextTokenizer(backend.tokenizer_file, backend.geometry.mqc.text_tokens)
    scores: dict[str, list[float]] = {name: [] for name in SETTINGS}
    flags: dict[str, dict[str, int]] = {name: {"fifo_write": 0, "fifo_skipped_uncertain": 0} for name in SETTINGS}
    head, entropy, errors, boundary = [], [], [], []
    for video in dataset.videos.values():
        frames = [dataset.read_frame(video.name, frame) for frame in video.frames]
        ids = [dataset.read_annotation(video.name, frame) for frame in video.frames]
        for expression in video.expressions.values():
            truths = [frame_ids == expression.obj_id for frame_ids in ids]
            for name, options in SETTINGS.items():
                results = track(backend, tokenizer, frames, expression.text, **options)
                scores[name].append(jf(results, truths))
                for flag in flags[name]:
                    flags[name][flag] += sum(flag in r.flags for r in results)
                if name == "confidence":
                    head += [r.uncertainty.astype(np.float16).ravel() for r in results]
                    entropy += [uncertainty_map(r.logits).astype(np.float16).ravel() for r in results]
                    errors += [(r.mask != t).ravel() for r, t in zip(results, truths)]
                    boundary += [r.boundary_uncertainty for r in results]
    head_u, labels = np.concatenate(head), np.concatenate(errors)
    report = {
        "expressions": len(scores["confidence"]), "pixels": int(labels.size), "error_rate": float(labels.mean()),
        "auroc_head": auroc(head_u, labels), "auroc_logit_entropy": auroc(np.concatenate(entropy), labels),
        "mean_boundary_uncertainty": float(np.mean(boundary)),
        "jf": {name: float(np.mean(values)) for name, values in scores.items()},
        "flags": flags,
        "settings": {name: dataclasses.asdict(TrackerConfig(mode="mqc", **options))
                     for name, options in SETTINGS.items()},
    }
    return report, calibration_table(head_u, labels)


def main(argv: list[str] | None = None) -> int:
    from mqc_edge.model.torch_backend import load

    parser = argparse.ArgumentParser(prog="python -m mqc_edge.benchmarks.uncertainty_eval",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="MQC-SAM checkpoint with the uncertainty head")
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="folder for report.json")
    parser.add_argument("--plot", type=Path, default=None, help="calibration plot PNG (default: OUT/calibration.png)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    backend = load(checkpoint=args.model, threads=args.threads)
    report, table = evaluate(backend, RVOSDataset.load(args.dataset))
    report.update(model=str(args.model), dataset=str(args.dataset), calibration=table)
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomically(args.out / "report.json", json.dumps(report, indent=1) + "\n")
    plot_calibration(table, args.plot or args.out / "calibration.png",
                     f"uncertainty calibration, {report['expressions']} expressions")
    print(json.dumps({key: value for key, value in report.items() if key not in ("settings", "calibration")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
