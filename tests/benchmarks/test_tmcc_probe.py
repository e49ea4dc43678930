"""The TMCC probe: frame-0 text starts once, TMCC settings scored against the ground truth."""

from __future__ import annotations

import json

import pytest

from mqc_edge.benchmarks.tmcc_probe import main, parse_settings
from mqc_edge.errors import ConfigError
from suite_helpers import synth_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory):
    return synth_dataset(tmp_path_factory.mktemp("synth"), 2, 10, 128, seed=9)


def test_settings_are_every_combination_typed_like_the_defaults() -> None:
    grid = parse_settings(["max_removed_fraction=0.2,0.7", "max_added_fraction=0.5,inf", "n_max=4"])
    assert len(grid) == 4 and grid[0] == {"max_removed_fraction": 0.2, "max_added_fraction": 0.5, "n_max": 4}
    assert grid[-1]["max_added_fraction"] == float("inf") and isinstance(grid[-1]["n_max"], int)
    for bad in (["nope=1"], ["n_max"], ["n_max=a"]):
        with pytest.raises(ConfigError, match="--set"):
            parse_settings(bad)


def test_guards_that_allow_no_change_leave_every_start_as_it_was(exported, dataset, tmp_path) -> None:
    code = main([str(exported[0]), "--gt", str(dataset), "--out", str(tmp_path), "--threads", "1", "--set",
                 "max_removed_fraction=1e-9,1", "max_added_fraction=1e-9"])
    assert code == 0
    report = json.loads((tmp_path / "tmcc_probe.json").read_text())
    expressions = sum(len(video["expressions"]) for video in
                      json.loads((dataset / "meta_expressions.json").read_text())["videos"].values())
    assert report["starts"] == expressions > 0 and len(report["rows"]) == 3
    assert [row["settings"] for row in report["rows"]][0] == "defaults"
    frozen = report["rows"][1]
    assert frozen["changed"] == 0 and frozen["J_tmcc"] == frozen["J_r0"]
    assert frozen["calibrated"] + frozen["stationary"] + frozen["rejected"] == expressions
    assert all(0.0 <= row["J_tmcc"] <= 1.0 and row["J_r0"] == frozen["J_r0"] for row in report["rows"])
    assert "| defaults |" in (tmp_path / "tmcc_probe.md").read_text()


def test_a_bad_setting_is_one_line(tmp_path, capsys) -> None:
    assert main([str(tmp_path), "--gt", str(tmp_path), "--out", str(tmp_path), "--set", "alpha=9"]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "beta > alpha" in error
