"""`mqc-edge batch`: list and dataset parsing (every bad line named before Ray starts), the resume
plan, atomic task folders, and a Ray batch of three tiny videos with one broken."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mqc_edge.cli import main
from mqc_edge.errors import ConfigError, PromptError
from mqc_edge.runtime.batch import (REPORT_FILE, TASK_RECORD, BatchSettings, BatchTask, plan_tasks, read_tasks,
                                    run_task, tasks_from_dataset, tasks_from_list)
from suite_helpers import EXPRESSIONS

HEIGHT, WIDTH, FRAMES = 72, 96, 4
BOX = [10, 20, 40, 40]


def _write_frames(folder: Path, count: int = FRAMES, corrupt_last: bool = False) -> Path:
    """A bright block moving right over textured ground; with `corrupt_last`, the last PNG holds garbage."""
    folder.mkdir(parents=True)
    ground = np.random.default_rng(3).integers(30, 90, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
    for t in range(count):
        frame = ground.copy()
        frame[20:40, 10 + 3 * t : 40 + 3 * t] = 230
        Image.fromarray(frame).save(folder / f"f{t:02d}.png")
    if corrupt_last:
        (folder / f"f{count - 1:02d}.png").write_bytes(b"\x89PNG\r\n\x1a\nnot an image at all")
    return folder


def _write_list(path: Path, lines: list[object]) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


# ---- the list: every line checked, the bad one named by its number


def test_list_lines_become_tasks_with_videos_read_from_the_lists_folder(tmp_path: Path) -> None:
    _write_frames(tmp_path / "clips" / "harbour")
    (tmp_path / "clips" / "orbit.mp4").write_bytes(b"")
    path = _write_list(tmp_path / "clips" / "list.jsonl", [
        {"video": "harbour", "text": "the ship at the bottom"},
        "",
        {"video": "orbit.mp4", "box": BOX},
        {"video": "harbour", "name": "harbour-pts", "points": [[12, 30], [50, 50]], "labels": [1, 0]},
    ])
    tasks = tasks_from_list(path)
    assert [task.name for task in tasks] == ["harbour", "orbit", "harbour-pts"]
    assert tasks[0].video == (tmp_path / "clips" / "harbour").absolute()
    assert tasks[1].prompt == {"box": BOX}
    assert tasks[2].prompt == {"points": [[12, 30], [50, 50]], "labels": [1, 0]}
    assert tasks[1].source == f"{path}:3"


@pytest.mark.parametrize(("line", "error", "message"), [
    ("{not json", ConfigError, "not valid JSON"),
    ([1, 2], ConfigError, "expected a JSON object"),
    ({"video": "a", "text": "x", "colour": "red"}, ConfigError, "unknown keys ['colour']"),
    ({"text": "x"}, ConfigError, "expected \"video\""),
    ({"video": "missing", "text": "x"}, ConfigError, "not found"),
    ({"video": "a"}, PromptError, "expected a prompt"),
    ({"video": "a", "text": "  "}, PromptError, "non-empty string"),
    ({"video": "a", "box": [40, 20, 10, 40]}, PromptError, "x0 < x1"),
    ({"video": "a", "box": "NaN"}, PromptError, "box prompt"),
    ({"video": "a", "points": [[1, 2]], "labels": [2]}, PromptError, "point labels"),
    ({"video": "a", "labels": [1]}, PromptError, "\"labels\" without \"points\""),
    ({"video": "a", "text": "x", "name": "../up"}, ConfigError, "one path component"),
    ({"video": "a", "text": "x", "name": ".hidden"}, ConfigError, "one path component"),
])
def test_a_bad_line_is_one_error_naming_its_number(tmp_path: Path, line, error, message) -> None:
    _write_frames(tmp_path / "a")
    path = _write_list(tmp_path / "list.jsonl", [{"video": "a", "text": "fine"}, line])
    with pytest.raises(error) as raised:
        tasks_from_list(path)
    assert str(raised.value).startswith(f"{path}:2: ")
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_nan_box_in_json_is_refused(tmp_path: Path) -> None:
    _write_frames(tmp_path / "a")
    path = _write_list(tmp_path / "list.jsonl", ['{"video": "a", "box": [NaN, 1, 5, 5]}'])
    with pytest.raises(PromptError, match=r"list.jsonl:1: box prompt: expected finite"):
        tasks_from_list(path)


def test_two_lines_for_one_folder_name_both_lines(tmp_path: Path) -> None:
    _write_frames(tmp_path / "a")
    path = _write_list(tmp_path / "list.jsonl", [{"video": "a", "text": "x"}, {"video": "a", "box": BOX}])
    with pytest.raises(ConfigError, match=r"list.jsonl:2: output folder 'a' is taken by .*list.jsonl:1"):
        tasks_from_list(path)


def test_an_empty_list_and_a_plain_folder_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="holds no task"):
        read_tasks(_write_list(tmp_path / "list.jsonl", ["", "  "]))
    with pytest.raises(ConfigError, match="not a dataset"):
        read_tasks(tmp_path)
    with pytest.raises(ConfigError, match="no such list file"):
        read_tasks(tmp_path / "nothing.jsonl")


def test_a_synth_dataset_gives_one_text_task_per_video_and_expression(tmp_path: Path) -> None:
    from mqc_edge.data.dataset import RVOSDataset
    from mqc_edge.data.synth import generate_dataset

    generate_dataset(out=tmp_path / "D", videos=2, frames=2, size=(96, 72), seed=0)
    dataset = RVOSDataset.load(tmp_path / "D")
    expected = [(f"{video.name}/{exp.exp_id}", exp.text) for video in dataset.videos.values()
                for exp in video.expressions.values()]
    tasks = read_tasks(tmp_path / "D")
    assert [(task.name, task.prompt["text"]) for task in tasks] == expected
    assert len(tasks) >= 2
    assert all(task.video == (tmp_path / "D" / "JPEGImages" / task.name.split("/")[0]).absolute() for task in tasks)
    assert tasks_from_dataset(tmp_path / "D", split="test") == tasks


# ---- resume: a finished folder is skipped, anything else in the way is never overwritten


PLANNED = BatchSettings(model=Path("/models/export"), mode="sam2")


def _finished(out: Path, task: BatchTask, frames: int = 3, settings: BatchSettings = PLANNED) -> None:
    (out / task.name).mkdir(parents=True)
    record = {"video": str(task.video), "prompt": task.prompt, "frames": frames, "seconds": 1.5,
              "model": str(settings.model), "mode": settings.mode, "backend": settings.backend}
    (out / task.name / TASK_RECORD).write_text(json.dumps(record))


def test_plan_skips_finished_tasks_and_refuses_foreign_folders(tmp_path: Path) -> None:
    out = tmp_path / "O"
    tasks = [BatchTask(name, tmp_path / name, {"box": BOX}) for name in ("done", "changed", "foreign", "new", "killed")]
    _finished(out, tasks[0])
    _finished(out, BatchTask("changed", tasks[1].video, {"text": "another object"}))
    (out / "foreign" / "masks").mkdir(parents=True)
    leftover = out / ".killed.0123456789ab.partial"
    (leftover / "masks").mkdir(parents=True)

    to_run, settled = plan_tasks(tasks, out, PLANNED)

    assert [task.name for task in to_run] == ["new", "killed"]
    assert settled["done"] == {"name": "done", "video": str(tasks[0].video), "status": "skipped", "frames": 3,
                               "seconds": 1.5, "error": None}
    assert settled["changed"]["status"] == "failed" and "another object" in settled["changed"]["error"]
    assert settled["foreign"]["status"] == "failed" and f"no {TASK_RECORD}" in settled["foreign"]["error"]
    assert not leftover.exists()  # a killed run's temporary is removed before its task runs again


def test_plan_refuses_a_folder_another_model_or_mode_made(tmp_path: Path) -> None:
    out = tmp_path / "O"
    by_model = BatchTask("by_model", tmp_path / "a", {"box": BOX})
    by_mode = BatchTask("by_mode", tmp_path / "b", {"box": BOX})
    _finished(out, by_model, settings=dataclasses.replace(PLANNED, model=Path("/models/older")))
    _finished(out, by_mode, settings=dataclasses.replace(PLANNED, mode="mqc"))

    to_run, settled = plan_tasks([by_model, by_mode], out, PLANNED)

    assert to_run == []  # never overwritten, never silently reused
    assert settled["by_model"]["status"] == "failed" and "(model /models/older)" in settled["by_model"]["error"]
    assert settled["by_mode"]["status"] == "failed" and "(mode mqc)" in settled["by_mode"]["error"]


# ---- one task without Ray: the real single-video path on the session's tiny export


def test_a_task_writes_its_folder_whole_or_not_at_all(exported, tmp_path: Path) -> None:
    settings = BatchSettings(model=exported[0], mode="sam2", threads=1)
    good = BatchTask("good", _write_frames(tmp_path / "good"), {"box": BOX})
    broken = BatchTask("broken", _write_frames(tmp_path / "broken", corrupt_last=True), {"box": BOX})
    out = tmp_path / "O"

    ok = run_task(good, settings, out)
    failed = run_task(broken, settings, out)

    assert ok["status"] == "ok" and ok["frames"] == FRAMES and ok["error"] is None and ok["seconds"] > 0
    assert sorted(path.stem for path in (out / "good" / "masks").glob("*.png")) == [f"f{t:02d}" for t in range(FRAMES)]
    assert json.loads((out / "good" / TASK_RECORD).read_text())["frames"] == FRAMES
    assert failed["status"] == "failed" and failed["frames"] is None
    assert "f03.png" in failed["error"] and "\n" not in failed["error"]
    assert sorted(path.name for path in out.iterdir()) == ["good"]  # three frames were written, then discarded
    assert plan_tasks([good, broken], out, settings)[0] == [broken]


def test_a_dataset_task_runs_its_expression_in_mqc_mode(exported, tmp_path: Path) -> None:
    task = BatchTask("clip/0", _write_frames(tmp_path / "clip"), {"text": EXPRESSIONS[0]})
    outcome = run_task(task, BatchSettings(model=exported[0], mode="mqc", threads=1), tmp_path / "O")
    assert outcome["status"] == "ok", outcome["error"]
    assert len((tmp_path / "O" / "clip" / "0" / "results.jsonl").read_text().splitlines()) == FRAMES


def test_without_ray_the_command_says_how_to_install_it(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    code = main(["batch", str(tmp_path), "--videos", str(tmp_path / "list.jsonl"), "--out", str(tmp_path / "O")])
    assert code == 2
    assert capsys.readouterr().err.strip() == \
        "mqc-edge: error: batch: Ray is not installed; pip install 'mqc-edge[scale]'"


# ---- the whole command on a local Ray


@pytest.mark.slow
def test_ray_batch_isolates_a_broken_video_and_resumes(exported, tmp_path: Path, capsys) -> None:
    ray = pytest.importorskip("ray")
    for name in ("alpha", "beta"):
        _write_frames(tmp_path / "videos" / name)
    _write_frames(tmp_path / "videos" / "broken", corrupt_last=True)
    videos = _write_list(tmp_path / "videos" / "list.jsonl",
                         [{"video": name, "box": BOX} for name in ("alpha", "broken", "beta")])
    out = tmp_path / "O"
    command = ["batch", str(exported[0]), "--videos", str(videos), "--out", str(out), "--workers", "2",
               "--mode", "sam2"]

    assert main(command) == 1
    assert not ray.is_initialized()  # the local cluster the command started is shut down
    first = json.loads((out / REPORT_FILE).read_text())
    by_name = {entry["name"]: entry for entry in first["tasks"]}
    assert [entry["name"] for entry in first["tasks"]] == ["alpha", "broken", "beta"]
    assert (first["ok"], first["failed"], first["skipped"]) == (2, 1, 0)
    for name in ("alpha", "beta"):
        assert by_name[name]["status"] == "ok" and by_name[name]["frames"] == FRAMES
        assert len((out / name / "results.jsonl").read_text().splitlines()) == FRAMES
    assert by_name["broken"]["status"] == "failed" and "f03.png" in by_name["broken"]["error"]
    assert sorted(path.name for path in out.iterdir()) == sorted(["alpha", "beta", REPORT_FILE])
    assert "failed: broken: " in capsys.readouterr().err

    finished = {name: (out / name / TASK_RECORD).stat().st_mtime_ns for name in ("alpha", "beta")}
    assert main(command) == 1
    second = json.loads((out / REPORT_FILE).read_text())
    assert [entry["status"] for entry in second["tasks"]] == ["skipped", "failed", "skipped"]
    assert [entry["frames"] for entry in second["tasks"]] == [FRAMES, None, FRAMES]
    assert {name: (out / name / TASK_RECORD).stat().st_mtime_ns for name in finished} == finished
    assert not ray.is_initialized()
