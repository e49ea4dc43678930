"""`mqc-edge compare`: per-video paired J&F differences and their standard error, and clear errors
for folders that cannot be paired."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from mqc_edge.benchmarks.paired_comparison import compare_evaluations, reports_under
from mqc_edge.cli import main
from mqc_edge.errors import DatasetError


def _write(folder: Path, place: str, scores: dict[str, float]) -> None:
    target = folder / "metrics" / place if place != "." else folder
    target.mkdir(parents=True, exist_ok=True)
    report = {"J&F": sum(scores.values()) / len(scores), "per_video": {v: {"J&F": s} for v, s in scores.items()}}
    (target / "metrics.json").write_text(json.dumps(report))


def test_paired_difference_and_standard_error_by_hand(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    _write(a, "mqc", {"v0": 0.2, "v1": 0.4, "v2": 0.6})
    _write(b, "mqc", {"v0": 0.3, "v1": 0.4, "v2": 0.8})  # differences 0.1, 0.0, 0.2
    _write(a, "sam2/onnxruntime", {"v0": 0.5})
    _write(b, "sam2/onnxruntime", {"v0": 0.25})
    _write(a, "sam2-box", {"v0": 0.5})  # only in A: not compared by default
    result = {d.report: d for d in compare_evaluations(a, b)}
    assert sorted(result) == ["mqc", "sam2/onnxruntime"]
    mqc = result["mqc"]
    assert (mqc.videos, mqc.mean_a, mqc.mean_b) == (3, pytest.approx(0.4), pytest.approx(0.5))
    assert mqc.difference == pytest.approx(0.1)
    assert mqc.standard_error == pytest.approx(0.1 / math.sqrt(3))  # std (ddof 1) of 0.1, 0, 0.2 is 0.1
    assert result["sam2/onnxruntime"].difference == pytest.approx(-0.25)
    assert math.isnan(result["sam2/onnxruntime"].standard_error)


def test_different_videos_or_a_missing_report_are_refused_in_one_line(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    _write(a, ".", {"v0": 0.2, "v1": 0.4})
    _write(b, ".", {"v0": 0.3, "v9": 0.4})
    assert list(reports_under(a)) == ["."]
    with pytest.raises(DatasetError, match=r"different videos \(2 in one only, e.g. \['v1', 'v9'\]\)"):
        compare_evaluations(a, b)
    with pytest.raises(DatasetError, match="no report 'mqc'"):
        compare_evaluations(a, b, ["mqc"])
    assert main(["compare", str(a), str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no metrics.json under it" in err


def test_cli_prints_the_table(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    _write(a, "mqc", {"v0": 0.2, "v1": 0.4})
    _write(b, "mqc", {"v0": 0.4, "v1": 0.4})
    assert main(["compare", str(a), str(b), "--reports", "mqc"]) == 0
    row = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| mqc")][0]
    assert row == "| mqc | 2 | 0.300 | 0.400 | +0.100 | 0.100 | +1.0 |"
