"""`mqc-edge batch`: many videos segmented in parallel on Ray, each folder written atomically.

Tasks come from a JSON Lines list (one video and one object's prompt per line) or from an
RS-RVOS dataset folder (one task per video and expression, the expression as a text prompt).
Each task is one `mqc-edge run` (`run_model`) into the folder O/<name>: `<video>` for
a list line, `<video>/<exp_id>` for a dataset expression. A task writes into a hidden temporary
folder beside O/<name> and renames it into place once every frame and its TASK_RECORD are
written, so a folder O/<name> that holds TASK_RECORD is a finished task: a second run with the same
model, mode and backend skips it (another one refuses to overwrite it),
and a killed run leaves only hidden temporaries, which the next run removes. A failed task is
listed, with its one-line error, in O/batch_report.json beside the others, which complete.

Ray (the `scale` extra) is imported only when a task has to run. The driver starts a local Ray
and shuts it down afterwards, or joins an existing cluster by address; there, the model, the
videos and O must be on a file system every node sees, and mqc-edge installed on every node.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import io
import json
import logging
import os
import secrets
import shutil
import sys
import time
from pathlib import Path
from typing import Iterator

from tqdm import tqdm

from mqc_edge.atomic import write_text_atomically
from mqc_edge.errors import ConfigError, MqcEdgeError, PromptError

REPORT_FILE = "batch_report.json"
"""O/batch_report.json: every task's status, frames, seconds and one-line error."""
TASK_RECORD = "batch_task.json"
"""Inside each finished task folder: the video and prompt it was made from, frames and seconds."""
LIST_KEYS = ("video", "name", "text", "box", "points", "labels")
"""Keys a line of a video list may hold."""
_PARTIAL = ".partial"
_TOKEN_HEX_CHARS = 12


@dataclasses.dataclass(frozen=True)
class BatchTask:
    """One video and one object's prompt, segmented into the folder O/<name>."""

    name: str
    """Output folder relative to O, '/'-separated: `<video>` or `<video>/<exp_id>`."""
    video: Path
    """Frame folder, image or video file (anything `mqc-edge run --video` takes)."""
    prompt: dict[str, object] = dataclasses.field(hash=False)
    """One object's `Tracker.start` keywords as JSON values: text, box [x0, y0, x1, y1] in frame
    pixels, points [[x, y], ...] with labels [0|1, ...]."""
    source: str = ""
    """Where the task was declared (`list.jsonl:3`, `dataset D video v expression 0`), for messages."""


@dataclasses.dataclass(frozen=True)
class BatchSettings:
    """How every task runs; the CLI builds it from `mqc-edge batch`'s options."""

    model: Path
    """Export directory or checkpoint, resolved once by the driver (`default` is exported before any task)."""
    mode: str = "mqc"
    """Tracker mode, as `mqc-edge run --mode`."""
    backend: str = "onnxruntime"
    """Stage backend of every task; onnxruntime keeps the workers torch-free."""
    threads: int = 1
    """CPU threads of each task's backend, and the CPUs Ray reserves for it: with 1, N tasks fill N cores."""


def read_tasks(videos: Path, split: str | None = None) -> list[BatchTask]:
    """`--videos`: a dataset folder (it holds meta_expressions.json) or a JSON Lines list file.

    `split` keeps the dataset's videos of splits/<split>.txt (a list takes none). Raises
    ConfigError / PromptError / DatasetError naming the line or file at fault.
    """
    from mqc_edge.data.dataset import META_FILE

    videos = Path(videos)
    if videos.is_dir() and (videos / META_FILE).is_file():
        return tasks_from_dataset(videos, split)
    if videos.is_dir():
        raise ConfigError(f"--videos {videos}: a folder, but not a dataset (no {META_FILE}); give a dataset or a .jsonl list")
    if not videos.is_file():
        raise ConfigError(f"--videos {videos}: no such list file or dataset folder")
    if split is not None:
        raise ConfigError(f"--split {split}: only a dataset has splits; {videos} is a list")
    return tasks_from_list(videos)


def tasks_from_list(path: Path) -> list[BatchTask]:
    """One task per non-blank line of a JSON Lines file: {"video": V, "text": T} or "box":
    [x0, y0, x1, y1] or "points": [[x, y], ...] with "labels": [1, 0, ...], and an optional
    "name" (default: the video's folder name or file stem). Relative videos are read from the
    list's folder. Every line is checked before any task runs; the first bad one raises a
    ConfigError or PromptError naming `path:line`."""
    path = Path(path)
    tasks: list[BatchTask] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            tasks.append(_task_from_line(line, f"{path}:{number}", path.parent))
    if not tasks:
        raise ConfigError(f"{path}: the list holds no task (one JSON object per line)")
    _check_unique_names(tasks)
    return tasks


def _task_from_line(line: str, where: str, folder: Path) -> BatchTask:
    try:
        entry = json.loads(line)
    except json.JSONDecodeError as error:
        raise ConfigError(f"{where}: not valid JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a JSON object, got {type(entry).__name__}")
    unknown = sorted(set(entry) - set(LIST_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}; expected among {list(LIST_KEYS)}")
    if not isinstance(entry.get("video"), str) or not entry["video"]:
        raise ConfigError(f"{where}: expected \"video\": a path, got {entry.get('video')!r}")
    video = folder.absolute() / entry["video"]  # absolute: workers run elsewhere (other folders, other nodes)
    if not video.exists():
        raise ConfigError(f"{where}: video {video} not found")
    prompt = {key: entry[key] for key in ("text", "box", "points", "labels") if key in entry}
    _check_prompt(prompt, where)
    name = entry.get("name", video.name if video.is_dir() else video.stem)
    _check_name(name, where)
    return BatchTask(name=name, video=video, prompt=prompt, source=where)


def _check_prompt(prompt: dict[str, object], where: str) -> None:
    from mqc_edge.runtime.prompts import check_prompts

    if "labels" in prompt and "points" not in prompt:
        raise PromptError(f"{where}: \"labels\" without \"points\"")
    if not any(key in prompt for key in ("text", "box", "points")):
        raise PromptError(f"{where}: expected a prompt: \"text\", \"box\" or \"points\" with \"labels\"")
    if "text" in prompt and (not isinstance(prompt["text"], str) or not prompt["text"].strip()):
        raise PromptError(f"{where}: \"text\" must be a non-empty string, got {prompt['text']!r}")
    try:
        check_prompts([prompt])
    except PromptError as error:
        raise PromptError(f"{where}: {str(error).removeprefix('object 1 ')}") from None


def _check_name(name: object, where: str) -> None:
    """A task folder name is one visible path component (temporaries and the report are hidden or reserved)."""
    if not isinstance(name, str) or not name or name.startswith(".") or "/" in name or "\\" in name \
            or name == REPORT_FILE:
        raise ConfigError(f"{where}: folder name must be one path component not starting with '.', got {name!r}")


def _check_unique_names(tasks: list[BatchTask]) -> None:
    first: dict[str, BatchTask] = {}
    for task in tasks:
        if task.name in first:
            raise ConfigError(f"{task.source}: output folder {task.name!r} is taken by {first[task.name].source}; "
                              f"give each line a distinct \"name\"")
        first[task.name] = task


def tasks_from_dataset(root: Path, split: str | None = None) -> list[BatchTask]:
    """One task per video and expression of an RS-RVOS dataset (the layout `mqc-edge data synth`
    writes): video D/JPEGImages/<video>, text prompt the expression, folder `<video>/<exp_id>`.
    Raises DatasetError for a broken dataset, ConfigError when it holds no expression."""
    from mqc_edge.data.dataset import FRAME_DIR, RVOSDataset

    dataset = RVOSDataset.load(root, split)
    tasks = []
    for video in dataset.videos.values():
        for expression in video.expressions.values():
            where = f"dataset {root} video {video.name!r} expression {expression.exp_id!r}"
            _check_name(video.name, where)
            _check_name(expression.exp_id, where)
            tasks.append(BatchTask(name=f"{video.name}/{expression.exp_id}",
                                   video=dataset.root.absolute() / FRAME_DIR / video.name,
                                   prompt={"text": expression.text}, source=where))
    if not tasks:
        raise ConfigError(f"dataset {root}: no expressions to segment" + (f" in split {split!r}" if split else ""))
    return tasks


def plan_tasks(tasks: list[BatchTask], out: Path, settings: BatchSettings) -> tuple[list[BatchTask], dict[str, dict]]:
    """Split `tasks` into those to run and the outcomes of the others (by name): `skipped` when
    O/<name> is finished with the same video and prompt by the same model, mode and backend
    (`settings`), `failed` when O/<name> exists but is not that task's finished folder (it is never
    overwritten; the error names what made it). A skipped entry carries the frames and seconds of
    the run that wrote the folder. Removes the temporary folders that a killed run left for the
    tasks to run."""
    to_run, settled = [], {}
    for task in tasks:
        folder = Path(out) / task.name
        record = _finished_record(folder)
        wanted = _task_record(task, settings)
        if record is not None and all(record.get(key) == value for key, value in wanted.items()):
            settled[task.name] = _outcome(task, "skipped", record.get("frames"), record.get("seconds"))
        elif folder.exists():
            made_of = _made_of(record, wanted) if record else f"no {TASK_RECORD}"
            settled[task.name] = _outcome(task, "failed", error=f"{folder} exists and is not this task's result "
                                                                 f"({made_of}); remove it to run the task")
        else:
            _remove_partials(folder)
            to_run.append(task)
    return to_run, settled


def _task_record(task: BatchTask, settings: BatchSettings) -> dict[str, object]:
    """What a finished folder's TASK_RECORD says it was made of (and must match for a skip)."""
    return {"video": str(task.video), "prompt": task.prompt, "model": str(settings.model), "mode": settings.mode,
            "backend": settings.backend}


def _made_of(record: dict, wanted: dict[str, object]) -> str:
    """The record's values that differ from this task's, e.g. "model /a/export mode sam2"."""
    return " ".join(f"{key} {record.get(key)}" for key, value in wanted.items() if record.get(key) != value)


def _finished_record(folder: Path) -> dict | None:
    try:
        record = json.loads((folder / TASK_RECORD).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return record if isinstance(record, dict) else None


def _remove_partials(folder: Path) -> None:
    token = "[0-9a-f]" * _TOKEN_HEX_CHARS
    for leftover in folder.parent.glob(f".{glob.escape(folder.name)}.{token}{_PARTIAL}"):
        shutil.rmtree(leftover, ignore_errors=True)


def run_task(task: BatchTask, settings: BatchSettings, out: Path) -> dict:
    """Segment one task's video into O/<name> (atomically, with TASK_RECORD inside) and return its
    report entry: name, video, status ok|failed, frames, seconds, error (one line or None).

    Never raises for a failing video: any error becomes a `failed` entry and its temporary folder
    is removed, so one broken video cannot stop the others (this is the batch's isolation boundary).
    """
    from mqc_edge.runtime.run import run_model

    final = Path(out) / task.name
    started = time.perf_counter()
    temporary = final.parent / f".{final.name}.{secrets.token_hex(_TOKEN_HEX_CHARS // 2)}{_PARTIAL}"
    try:
        temporary.mkdir(parents=True)
        with contextlib.redirect_stderr(io.StringIO()):  # each video's frame bar would scramble the batch's bar
            frames, _ = run_model(model=settings.model, video=task.video, out_dir=temporary,
                                            prompts=[task.prompt], mode=settings.mode, backend=settings.backend,
                                            threads=settings.threads)
        seconds = round(time.perf_counter() - started, 3)
        record = {**_task_record(task, settings), "frames": frames, "seconds": seconds}
        write_text_atomically(temporary / TASK_RECORD, json.dumps(record, indent=1, allow_nan=False) + "\n")
        os.rename(temporary, final)  # refuses a non-empty folder: a finished one is never replaced
    except Exception as error:  # the isolation boundary: whatever one video raises is its own failure
        shutil.rmtree(temporary, ignore_errors=True)
        return _outcome(task, "failed", seconds=round(time.perf_counter() - started, 3), error=one_line(error))
    return _outcome(task, "ok", frames, seconds)


def one_line(error: BaseException) -> str:
    """The error as one line: its message (with the type's name unless it is an MqcEdgeError)."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if isinstance(error, MqcEdgeError) else f"{type(error).__name__}: {text}"


def _outcome(task: BatchTask, status: str, frames: int | None = None, seconds: float | None = None,
             error: str | None = None) -> dict:
    return {"name": task.name, "video": str(task.video), "status": status, "frames": frames, "seconds": seconds,
            "error": error}


def run_batch(tasks: list[BatchTask], settings: BatchSettings, out: Path, address: str | None = None,
              workers: int | None = None, progress: bool = True) -> dict:
    """Run every task not finished in O on Ray, at most `workers` at a time (default: as many as
    the CPUs allow), with a progress bar over tasks on stderr when `progress`.

    Ray: the one already initialised in this process, else the cluster at `address`, else a local
    one started here with `workers * threads` CPUs (all CPUs without `workers`); what is started
    here is shut down here. O/batch_report.json is rewritten after every task (a killed run keeps
    a report, its unfinished tasks `pending`); returns the final report:
    {"model", "mode", "backend", "threads", "tasks": [entry per task, in task order],
    "ok", "failed", "skipped": counts}. Raises ConfigError without Ray or for workers < 1.
    """
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers: expected >= 1, got {workers}")
    if settings.threads < 1:
        raise ConfigError(f"--threads: expected >= 1, got {settings.threads}")
    out = Path(out).absolute()  # workers may start in another folder
    settings = dataclasses.replace(settings, model=Path(settings.model).absolute())
    out.mkdir(parents=True, exist_ok=True)
    to_run, outcomes = plan_tasks(tasks, out, settings)
    report = _Report(out, settings, tasks, outcomes)
    if to_run:
        ray = import_ray()
        with _ray_running(ray, address, workers, settings.threads), \
                tqdm(total=len(tasks), initial=len(tasks) - len(to_run), unit="video", disable=not progress,
                     file=sys.stderr) as bar:
            for outcome in _completed(ray, to_run, settings, out, workers):
                report.add(outcome)
                bar.update(1)
    return report.write()


def import_ray():
    """The `ray` module, or a one-line ConfigError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError("batch: Ray is not installed; pip install 'mqc-edge[scale]'") from None
    return ray


@contextlib.contextmanager
def _ray_running(ray, address: str | None, workers: int | None, threads: int) -> Iterator[None]:
    if ray.is_initialized():
        yield
        return
    quiet = {"log_to_driver": False, "logging_level": logging.ERROR}  # task output goes to the report, not the bar
    if address is None:
        ray.init(num_cpus=workers * threads if workers else None, include_dashboard=False, **quiet)
    else:
        ray.init(address=address, **quiet)
    try:
        yield
    finally:
        ray.shutdown()


def _completed(ray, tasks: list[BatchTask], settings: BatchSettings, out: Path,
               workers: int | None) -> Iterator[dict]:
    """Outcomes as tasks finish; at most `workers` in flight, so an existing cluster is not flooded."""
    remote = ray.remote(num_cpus=settings.threads)(run_task)
    waiting = iter(tasks)
    in_flight: dict = {}

    def submit() -> None:
        task = next(waiting, None)
        if task is not None:
            in_flight[remote.remote(task, settings, out)] = task

    for _ in range(workers or len(tasks)):
        submit()
    while in_flight:
        [done], _ = ray.wait(list(in_flight), num_returns=1)
        task = in_flight.pop(done)
        try:
            outcome = ray.get(done)
        except ray.exceptions.RayError as error:  # the worker died (killed, out of memory), not the video
            outcome = _outcome(task, "failed", error=one_line(error))
        submit()
        yield outcome


class _Report:
    """O/batch_report.json, kept current as outcomes arrive."""

    def __init__(self, out: Path, settings: BatchSettings, tasks: list[BatchTask], outcomes: dict[str, dict]) -> None:
        self.path = out / REPORT_FILE
        self.header = {"model": str(settings.model), "mode": settings.mode, "backend": settings.backend,
                       "threads": settings.threads}
        self.tasks = tasks
        self.outcomes = dict(outcomes)

    def add(self, outcome: dict) -> None:
        self.outcomes[outcome["name"]] = outcome
        self.write()

    def write(self) -> dict:
        entries = [self.outcomes.get(task.name) or _outcome(task, "pending") for task in self.tasks]
        counts = {status: sum(entry["status"] == status for entry in entries) for status in ("ok", "failed", "skipped")}
        report = {**self.header, "tasks": entries, **counts}
        write_text_atomically(self.path, json.dumps(report, indent=1, allow_nan=False) + "\n")
        return report
