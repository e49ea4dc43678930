"""The referring protocol: score one predicted mask per expression per frame against RS-RVOS.

Predictions live in `P/<video>/<exp_id>/<frame>.png`; any nonzero pixel is foreground, so
palette, grey and colour PNGs written by any tool are accepted. J and F of an expression are
averaged over the frames where its target is present (CroBIM-V eq. 25: frames whose ground
truth is empty are left out), then over expressions, each expression weighing the same.
Where the dataset names its targets' categories, the same summary is given per category.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from mqc_edge.atomic import write_text_atomically
from mqc_edge.data.dataset import RVOSDataset, VideoRecord
from mqc_edge.data.metrics import SequenceStats, boundary_f, region_similarity, sequence_stats
from mqc_edge.errors import DatasetError

PREDICTION_MODES = ("1", "L", "P", "RGB", "RGBA", "I", "I;16")
"""PNG modes whose pixel values mean 'foreground if nonzero' (alpha is ignored)."""

SUMMARY_KEYS = ("J&F", "J", "F", "J_recall", "F_recall", "J_decay", "F_decay")
UNCATEGORISED = "(no category)"
"""Category row of the expressions a partly categorised dataset leaves unnamed."""


@dataclass(frozen=True)
class ExpressionScore:
    """DAVIS statistics of one expression over the frames where its target is present."""

    video: str
    exp_id: str
    j: SequenceStats
    f: SequenceStats
    frames: int  # frames scored (target present)
    frames_excluded: int  # frames left out because the ground truth is empty
    category: str | None = None  # the target's class, when the dataset names it


def prediction_path(pred_root: Path, video: str, exp_id: str, frame: str) -> Path:
    return pred_root / video / exp_id / f"{frame}.png"


def read_prediction(path: Path) -> np.ndarray:
    """bool [H, W]: nonzero palette index, grey level or colour channel is foreground."""
    if not path.is_file():
        raise DatasetError(f"{path}: prediction missing (expected P/<video>/<exp_id>/<frame>.png)")
    try:
        with Image.open(path) as image:
            mode, bands = image.mode, image.getbands()
            values = np.asarray(image) if mode in PREDICTION_MODES else None
    except OSError as error:
        raise DatasetError(f"{path}: unreadable prediction ({error})") from None
    if values is None:
        raise DatasetError(f"{path}: prediction PNG mode must be one of {', '.join(PREDICTION_MODES)}, got {mode}")
    if values.ndim == 3:
        colour = [index for index, band in enumerate(bands) if band != "A"]
        return values[..., colour].any(axis=-1)
    return values != 0


def _check_predictions_exist(pred_root: Path, dataset: RVOSDataset) -> None:
    """Fail before any scoring, naming the first missing file and how many more there are."""
    expected = (
        prediction_path(pred_root, video.name, exp_id, frame)
        for video in dataset.videos.values()
        for exp_id in video.expressions
        for frame in video.frames
    )
    missing = [path for path in expected if not path.is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DatasetError(f"{missing[0]}: prediction missing{more}; expected one PNG per expression per frame")


def _checked_prediction(path: Path, annotation_path: Path, shape: tuple[int, int]) -> np.ndarray:
    mask = read_prediction(path)
    if mask.shape != shape:
        raise DatasetError(
            f"{path}: prediction is {mask.shape[1]}x{mask.shape[0]} (WxH), "
            f"expected {shape[1]}x{shape[0]} like {annotation_path}"
        )
    return mask


def score_video(pred_root: Path, dataset: RVOSDataset, video: VideoRecord) -> list[ExpressionScore]:
    """Per-frame J and F of every expression of `video`; each annotation is read once."""
    j_series: dict[str, list[float]] = {exp_id: [] for exp_id in video.expressions}
    f_series: dict[str, list[float]] = {exp_id: [] for exp_id in video.expressions}
    for frame in video.frames:
        ids = dataset.read_annotation(video.name, frame)
        for exp_id, expression in video.expressions.items():
            path = prediction_path(pred_root, video.name, exp_id, frame)
            pred = _checked_prediction(path, dataset.annotation_path(video.name, frame), ids.shape)
            gt = ids == expression.obj_id
            if gt.any():
                j_series[exp_id].append(region_similarity(pred, gt))
                f_series[exp_id].append(boundary_f(pred, gt))
    return [
        _expression_score(dataset, video, exp_id, j_series[exp_id], f_series[exp_id]) for exp_id in video.expressions
    ]


def _expression_score(
    dataset: RVOSDataset, video: VideoRecord, exp_id: str, j: list[float], f: list[float]
) -> ExpressionScore:
    if not j:
        folder = dataset.annotation_path(video.name, video.frames[0]).parent
        raise DatasetError(
            f"{folder}: object id {video.expressions[exp_id].obj_id} of expression {exp_id!r} "
            f"appears in none of the {len(video.frames)} frames; J and F need at least one"
        )
    return ExpressionScore(
        video=video.name,
        exp_id=exp_id,
        j=sequence_stats(np.array(j)),
        f=sequence_stats(np.array(f)),
        frames=len(j),
        frames_excluded=len(video.frames) - len(j),
        category=video.expressions[exp_id].category,
    )


def _summary(scores: list[ExpressionScore]) -> dict[str, float | int]:
    """Means over expressions (each weighs the same); frames counts (expression, frame) pairs."""

    def mean(values: list[float]) -> float:
        return float(np.mean(values))

    j, f = mean([s.j.mean for s in scores]), mean([s.f.mean for s in scores])
    return {
        "J&F": (j + f) / 2,
        "J": j,
        "F": f,
        "J_recall": mean([s.j.recall for s in scores]),
        "F_recall": mean([s.f.recall for s in scores]),
        "J_decay": mean([s.j.decay for s in scores]),
        "F_decay": mean([s.f.decay for s in scores]),
        "expressions": len(scores),
        "frames": sum(s.frames for s in scores),
        "frames_excluded": sum(s.frames_excluded for s in scores),
    }


def build_report(scores: list[ExpressionScore]) -> dict:
    """Overall summary, per video its summary plus every expression's own statistics, and, when
    the dataset names categories, "per_category": the summary of each category's expressions."""
    per_video: dict[str, dict] = {}
    for video in sorted({s.video for s in scores}):
        own = [s for s in scores if s.video == video]
        per_video[video] = {
            **_summary(own),
            "per_expression": {s.exp_id: _summary([s]) for s in own},
        }
    report = {**_summary(scores), "per_video": per_video}
    if any(s.category is not None for s in scores):
        report["per_category"] = per_category(scores)
    return report


def per_category(scores: list[ExpressionScore]) -> dict[str, dict[str, float | int]]:
    """{category: summary of its expressions}, categories sorted by name."""
    names = sorted({s.category or UNCATEGORISED for s in scores})
    return {name: _summary([s for s in scores if (s.category or UNCATEGORISED) == name]) for name in names}


def _cell(value: float | int) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def format_table(report: dict) -> str:
    """Markdown table: the overall row, then one row per video; then one row per category when the
    report has them."""
    rows = [("**overall**", report)] + [(name, row) for name, row in report["per_video"].items()]
    text = _markdown_rows("", rows)
    if "per_category" in report:
        text += "\n" + _markdown_rows("category", list(report["per_category"].items()))
    return text


def _markdown_rows(first_column: str, rows: list[tuple[str, dict]]) -> str:
    columns = (*SUMMARY_KEYS, "expressions", "frames")
    header = " | ".join(name.replace("_", " ") for name in columns)
    lines = [f"|{' ' + first_column if first_column else ''} | {header} |", "|---|" + "---:|" * len(columns)]
    for name, row in rows:
        cells = [name.replace("|", "\\|")] + [_cell(row[key]) for key in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def evaluate_predictions(pred_root: Path, gt_root: Path, out_dir: Path, split: str | None = None) -> dict:
    """Score `pred_root` against the dataset at `gt_root`; write metrics.json and metrics.md.

    With `split`, only the videos listed in splits/<split>.txt are scored (and needed).
    """
    pred_root, out_dir = Path(pred_root), Path(out_dir)
    dataset = RVOSDataset.load(Path(gt_root), split=split)
    if not any(video.expressions for video in dataset.videos.values()):
        raise DatasetError(f"{dataset.root}: no expressions to evaluate (split {split!r})")
    _check_predictions_exist(pred_root, dataset)
    scores = [score for video in dataset.videos.values() for score in score_video(pred_root, dataset, video)]
    report = build_report(scores)
    write_text_atomically(out_dir / "metrics.json", json.dumps(report, indent=2) + "\n")
    write_text_atomically(out_dir / "metrics.md", format_table(report))
    return report
