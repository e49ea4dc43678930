"""`mqc-edge eval --variants`: encode-ahead gives the serial run's masks; what it cannot run is refused by name."""

from __future__ import annotations

import json

import pytest

from mqc_edge.benchmarks.accuracy_eval import METRICS, check_variants, format_accuracy
from mqc_edge.cli import main
from mqc_edge.errors import ConfigError
from suite_helpers import synth_dataset

VIDEOS, FRAMES, SIZE = 2, 4, 128


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory):
    return synth_dataset(tmp_path_factory.mktemp("synth"), VIDEOS, FRAMES, SIZE, seed=5)


def _eval(exported, dataset, out, *extra: str) -> dict:
    code = main(["eval", "--model", str(exported[0]), "--gt", str(dataset), "--out", str(out),
                 "--variants", "mqc", "sam2-box", *extra])
    assert code == 0
    return json.loads((out / "accuracy.json").read_text())


def test_encode_ahead_writes_the_serial_runs_masks_byte_for_byte(exported, dataset, tmp_path) -> None:
    serial = _eval(exported, dataset, tmp_path / "serial", "--threads", "1")
    ahead = _eval(exported, dataset, tmp_path / "ahead", "--encode-ahead")
    assert (serial["encode_ahead"], ahead["encode_ahead"]) == (False, True)
    masks = sorted(path.relative_to(tmp_path / "serial") for path in (tmp_path / "serial" / "predictions").rglob("*.png"))
    videos = json.loads((dataset / "meta_expressions.json").read_text())["videos"].values()
    assert len(masks) == 2 * sum(len(video["expressions"]) * len(video["frames"]) for video in videos) > 0
    for path in masks:
        assert (tmp_path / "ahead" / path).read_bytes() == (tmp_path / "serial" / path).read_bytes(), path
    for name in ("mqc", "sam2-box"):
        assert {key: ahead["variants"][name][key] for key in METRICS} == \
               {key: serial["variants"][name][key] for key in METRICS}
        scored = json.loads((tmp_path / "serial" / "metrics" / name / "metrics.json").read_text())["per_category"]
        assert serial["variants"][name]["per_category"] == \
               {category: {"J&F": row["J&F"], "expressions": row["expressions"]} for category, row in scored.items()}
        assert sum(row["expressions"] for row in scored.values()) == serial["expressions"]
    assert "J&F per category" in (tmp_path / "serial" / "accuracy.md").read_text()


def test_category_table_has_a_cell_per_variant_and_category() -> None:
    row = {"description": "d", "ms_per_frame": 1.0, **{key: 0.5 for key in METRICS}}
    report = {"variants": {"mqc": {**row, "per_category": {"ship": {"J&F": 0.25, "expressions": 3}}},
                           "sam2-box": {**row, "per_category": {"car": {"J&F": 0.75, "expressions": 1}}}}}
    lines = format_accuracy(report).splitlines()
    assert "| variant | car | ship |" in lines
    assert "| mqc | - | 0.250 (3) |" in lines and "| sam2-box | 0.750 (1) | - |" in lines
    plain = {"variants": {"mqc": row}}
    assert "per category" not in format_accuracy(plain)


def test_encode_ahead_refuses_crop_variants_by_name() -> None:
    with pytest.raises(ConfigError, match=r"sam2-box-roi.*serially"):
        check_variants(("sam2-box", "sam2-box-roi"), encode_ahead=True)
    check_variants(("sam2-box", "sam2-box-roi"), encode_ahead=False)


@pytest.mark.parametrize("mode", [["--pred", "p"], ["--model", "m"]])
def test_encode_ahead_outside_variant_runs_is_one_line(mode, tmp_path, capsys) -> None:
    code = main(["eval", *mode, "--gt", str(tmp_path), "--out", str(tmp_path / "r"), "--encode-ahead"])
    error = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in error and "--encode-ahead" in error
