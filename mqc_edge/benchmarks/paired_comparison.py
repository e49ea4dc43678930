"""Two evaluations of the same videos, compared video by video: `mqc-edge compare EVAL_A EVAL_B`.

Each `metrics.json` that `mqc-edge eval` wrote under EVAL_A (`metrics.json` of `--pred`,
`metrics/<variant>/metrics.json` of `--variants`, `metrics/<mode>/<backend>/metrics.json` of
parity) is paired with the one at the same place under EVAL_B. Per video, the J&F of B minus
the J&F of A (a video's J&F is its expressions' mean, data/evaluate.py), then the mean of those
differences and its standard error, std / sqrt(videos) (ddof 1). Pairing cancels what the videos
themselves make easy or hard. On this project's 20-video test split the standard error of a
checkpoint-to-checkpoint difference was 0.018-0.032 J&F, so a difference of 0.03 there is one to
two standard errors (docs/model_card.md, "Choosing checkpoints").

Raises DatasetError (one line, naming the file or the videos) for a missing or unreadable report,
or when the two reports do not score the same videos.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from mqc_edge.errors import DatasetError

REPORT_FILE = "metrics.json"


@dataclass(frozen=True)
class PairedDifference:
    """B against A on the videos both scored."""

    report: str  # where under the eval folders: "." (--pred), "mqc", "sam2/onnxruntime", ...
    videos: int
    mean_a: float  # mean over videos of the per-video J&F
    mean_b: float
    difference: float  # mean of (B - A) per video
    standard_error: float  # std of the per-video differences (ddof 1) / sqrt(videos); nan for one video


def per_video_jf(path: Path) -> dict[str, float]:
    """{video: J&F} of one `metrics.json`; raises DatasetError naming the file."""
    try:
        report = json.loads(path.read_text())
        return {video: float(row["J&F"]) for video, row in report["per_video"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise DatasetError(f"{path}: not an `mqc-edge eval` report ({type(error).__name__}: {error})") from None


def reports_under(folder: Path) -> dict[str, Path]:
    """{place under `folder` ("." for the folder itself): metrics.json}; raises DatasetError when none."""
    found = {("." if p.parent == folder else p.parent.relative_to(folder / "metrics").as_posix()): p
             for p in sorted(folder.rglob(REPORT_FILE))}
    if not found:
        raise DatasetError(f"{folder}: no {REPORT_FILE} under it (an `mqc-edge eval --out` folder?)")
    return found


def paired_difference(a: Path, b: Path, report: str) -> PairedDifference:
    """B's per-video J&F minus A's, for two reports of the same videos."""
    scores_a, scores_b = per_video_jf(a), per_video_jf(b)
    if scores_a.keys() != scores_b.keys():
        only = sorted(scores_a.keys() ^ scores_b.keys())
        raise DatasetError(f"{a} and {b} score different videos ({len(only)} in one only, e.g. {only[:3]}): "
                           "a paired comparison needs the same videos")
    videos = sorted(scores_a)
    differences = [scores_b[v] - scores_a[v] for v in videos]
    spread = statistics.stdev(differences) / math.sqrt(len(videos)) if len(videos) > 1 else math.nan
    return PairedDifference(report, len(videos), statistics.fmean(scores_a.values()),
                            statistics.fmean(scores_b.values()), statistics.fmean(differences), spread)


def compare_evaluations(a: Path, b: Path, reports: list[str] | None = None) -> list[PairedDifference]:
    """Every report both folders hold (or `reports`), paired; raises DatasetError for a report one lacks."""
    found_a, found_b = reports_under(a), reports_under(b)
    names = reports if reports is not None else [name for name in found_a if name in found_b]
    missing = [f"{folder}: no report {name!r}" for name in names for folder, found in ((a, found_a), (b, found_b))
               if name not in found]
    if missing or not names:
        raise DatasetError("; ".join(missing) or f"{a} and {b} hold no report at the same place")
    return [paired_difference(found_a[name], found_b[name], name) for name in names]


def format_comparison(a: Path, b: Path, differences: list[PairedDifference]) -> str:
    """Markdown: one row per report, the difference with its standard error and their ratio."""
    lines = [f"A = {a}, B = {b}; per-video J&F, B - A", "",
             "| report | videos | J&F A | J&F B | B - A | standard error | difference / s.e. |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for d in differences:
        ratio = d.difference / d.standard_error if d.standard_error > 0 else math.nan
        lines.append(f"| {d.report} | {d.videos} | {d.mean_a:.3f} | {d.mean_b:.3f} | {d.difference:+.3f} | "
                     f"{d.standard_error:.3f} | {ratio:+.1f} |")
    return "\n".join(lines) + "\n"
