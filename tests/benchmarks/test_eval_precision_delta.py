"""`mqc-edge eval --model DIR2` of a build: the delta against the FP32 export it was built from
(issue 20), and one line when that export is gone."""

from __future__ import annotations

import json
import shutil

import pytest

from mqc_edge.calibration.clips import CALIBRATION_SEED, ClipSet
from mqc_edge.cli import main
from mqc_edge.precision.build import BuildConfig, build_precision
from suite_helpers import synth_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory):
    return synth_dataset(tmp_path_factory.mktemp("synth"), 1, 4, 128, seed=5)


@pytest.fixture(scope="module")
def fp32_build(exported, tmp_path_factory: pytest.TempPathFactory):
    """(a copy of the export, an fp32 build of that copy: the same graphs, so a zero delta)."""
    root = tmp_path_factory.mktemp("build")
    source = shutil.copytree(exported[0], root / "source")
    build_precision(BuildConfig(source, root / "fp32", "fp32", calibration=ClipSet(clips=1, frames=2, seed=CALIBRATION_SEED),
                                gate_clips=ClipSet(clips=1, frames=3), threads=1))
    return source, root / "fp32"


def _eval(model, dataset, out) -> tuple[int, dict]:
    code = main(["eval", "--model", str(model), "--gt", str(dataset), "--out", str(out), "--modes", "sam2",
                 "--threads", "1"])
    return code, json.loads((out / "parity.json").read_text())


def test_a_build_is_compared_with_its_fp32_export(fp32_build, dataset, tmp_path, capsys) -> None:
    source, build = fp32_build
    code, report = _eval(build, dataset, tmp_path / "r")
    delta = report["modes"]["sam2"]["vs_fp32_export"]
    assert code == 0 and report["fp32_export"] == str(source)
    assert delta["iou_mean"] == delta["iou_min"] == 1.0 and delta["max_logit_abs"] == 0.0
    assert delta["jf_fp32"] == delta["jf_build"] and delta["jf_delta_points"] == 0.0
    assert delta["frames_compared"] == report["modes"]["sam2"]["frames_compared"] > 0
    assert len(list((tmp_path / "r" / "predictions" / "sam2" / "fp32-export").rglob("*.png"))) == delta["frames_compared"]
    printed = capsys.readouterr().out
    assert f"Against the FP32 export {source}" in printed and "| sam2 | " in printed
    assert "Against the FP32 export" in (tmp_path / "r" / "parity.md").read_text()


def test_a_build_whose_fp32_export_is_gone_says_so_in_one_line(fp32_build, dataset, tmp_path, capsys) -> None:
    source, build = fp32_build
    moved = source.rename(source.with_name("moved"))
    try:
        code, report = _eval(build, dataset, tmp_path / "r")
    finally:
        moved.rename(source)
    assert code == 0 and report["fp32_export"] is None and "vs_fp32_export" not in report["modes"]["sam2"]
    note = report["fp32_export_note"]
    assert "\n" not in note and str(source) in note and "no longer exists" in note
    assert note in capsys.readouterr().out


def test_an_fp32_export_has_no_delta(exported, dataset, tmp_path) -> None:
    _, report = _eval(exported[0], dataset, tmp_path / "r")
    assert report["fp32_export"] is None and "fp32_export_note" not in report
    assert "vs_fp32_export" not in report["modes"]["sam2"]
