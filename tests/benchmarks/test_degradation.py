"""The degradation robustness suite: conditions, the CLI's --degrade, and an end-to-end run on the tiny export."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mqc_edge.benchmarks.accuracy_eval import AccuracyEvalConfig
from mqc_edge.benchmarks.degradation import (DEFAULT_STRENGTHS, SUITE_KINDS, DegradationEvalConfig, DegradedDataset,
                                             conditions, parse_kinds, parse_strengths)
from mqc_edge.cli import build_parser, main
from mqc_edge.data.dataset import RVOSDataset
from mqc_edge.data.synth.degrade import FrameDegradation
from mqc_edge.errors import ConfigError
from suite_helpers import synth_dataset

VIDEOS, FRAMES, SIZE = 1, 4, 128


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory):
    return synth_dataset(tmp_path_factory.mktemp("synth"), VIDEOS, FRAMES, SIZE, seed=3)


def suite(kinds: tuple[str, ...], strengths=tuple(DEFAULT_STRENGTHS.items())) -> DegradationEvalConfig:
    accuracy = AccuracyEvalConfig(model_dir=None, dataset=None, out_dir=None, variants=("sam2-box",))
    return DegradationEvalConfig(accuracy, kinds, strengths)


def test_the_cli_parses_degrade_and_strengths() -> None:
    args = build_parser().parse_args(["eval", "--model", "m", "--gt", "d", "--out", "r", "--degrade", "noise,haze",
                                      "--strengths", "noise=4,8", "haze=0.5"])
    assert parse_kinds(args.degrade) == ("noise", "haze")
    assert dict(parse_strengths(args.strengths)) == {**DEFAULT_STRENGTHS, "noise": (4.0, 8.0), "haze": (0.5,)}
    assert parse_kinds(" noise , noise,timevarying") == ("noise", "timevarying")


def test_an_unknown_kind_is_one_line_naming_the_valid_ones(tmp_path, capsys) -> None:
    code = main(["eval", "--model", str(tmp_path / "m"), "--gt", str(tmp_path), "--out", str(tmp_path / "r"),
                 "--degrade", "noise,fog"])
    error = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in error and "fog" in error
    assert all(kind in error for kind in SUITE_KINDS)


@pytest.mark.parametrize("items", [["fog=1"], ["noise=a"], ["haze=2"]])
def test_bad_strengths_are_config_errors(items) -> None:
    with pytest.raises(ConfigError):
        parse_strengths(items)


def test_conditions_are_clean_then_each_kind_at_each_strength() -> None:
    found = conditions(suite(("blur", "timevarying")))
    assert [c.name for c in found] == ["clean", "blur-1", "blur-2", "blur-4",
                                       "timevarying-1", "timevarying-2", "timevarying-3"]
    assert found[-1].degradation.timevarying and dict(found[-1].degradation.strengths)["clouds"] == 0.5
    uneven = tuple({**DEFAULT_STRENGTHS, "noise": (8.0,)}.items())
    with pytest.raises(ConfigError, match="same number"):
        conditions(suite(("timevarying",), uneven))


def test_the_model_sees_degraded_frames_and_the_ground_truth_is_untouched(dataset) -> None:
    clean = RVOSDataset.load(dataset)
    seen = DegradedDataset(clean, FrameDegradation((("noise", 16.0),)), seed=0)
    video = next(iter(clean.videos.values()))
    frame = video.frames[1]
    assert not np.array_equal(seen.read_frame(video.name, frame), clean.read_frame(video.name, frame))
    assert np.array_equal(seen.read_frame(video.name, frame), seen.read_frame(video.name, frame))
    assert np.array_equal(seen.read_annotation(video.name, frame), clean.read_annotation(video.name, frame))


def test_end_to_end_writes_the_table_and_the_plot(exported, dataset, tmp_path) -> None:
    out = tmp_path / "r"
    code = main(["eval", "--model", str(exported[0]), "--gt", str(dataset), "--out", str(out), "--threads", "1",
                 "--degrade", "haze,timevarying", "--variants", "sam2-box", "flow-gt-mask",
                 "--strengths", "noise=8", "blur=2", "lowlight=0.5", "haze=0.5", "clouds=0.25"])
    assert code == 0
    report = json.loads((out / "degradation.json").read_text())
    assert [(row["kind"], row["variant"]) for row in report["rows"]] == [
        (kind, variant) for kind in ("clean", "haze", "timevarying") for variant in ("sam2-box", "flow-gt-mask")]
    assert all(0.0 <= row["J&F"] <= 1.0 for row in report["rows"])
    table = (out / "degradation.md").read_text()
    assert "| haze | transmission 0.5 |" in table and "sam2-box drop" in table
    assert (out / "degradation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
