"""CLI behaviour shared by all commands: bad input is one line and exit status 2."""

import pytest

from mqc_edge.cli import main


def test_user_error_is_one_line_and_status_2(tmp_path, capsys):
    code = main(["eval", "--pred", str(tmp_path / "p"), "--gt", str(tmp_path / "missing"), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("mqc-edge: error: ") and "meta_expressions.json" in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_bad_size_argument_is_rejected_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "synth", "--out", "x", "--size", "480by480"])
    assert exit_info.value.code == 2
    assert "size must look like 480x480" in capsys.readouterr().err


def test_run_needs_the_model_exactly_once(tmp_path, capsys):
    code = main(["run", str(tmp_path / "a"), "--checkpoint", str(tmp_path / "b"), "--video", str(tmp_path),
                 "--box", "0", "0", "4", "4", "--out", str(tmp_path / "o")])
    assert code == 2
    assert "give the model once" in capsys.readouterr().err
