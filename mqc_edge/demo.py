"""`mqc-edge demo`: the product's main job on the shipped default model, end to end.

1. generate satellite-like clips (data/synth, a test seed no training clip uses);
2. export the default model once per user (default_model.py; verified by its manifest);
3. run the torch-free runtime (onnxruntime) from each clip's referring texts (MQC mode) and from
   the frame-0 boxes (SAM 2 mode), and the optical-flow BASELINE given the ground-truth mask; one
   stage at a time on 2 threads, or with `encode_ahead` the next frame's image encoding beside this
   frame's memory stages, one onnxruntime thread each (the same masks, runtime/encode_ahead.py; on
   the demo's 256 px clips 5-10 % slower on this 2-core machine, so not the default);
4. score all three with J&F (DAVIS protocol, referring setting);
5. `mqc-edge run` on the first clip from its first text: masks, results.jsonl, overlay video;
   a PNG strip of a few frames; O/report.json with J&F, J, F, FPS, ms/frame and per-stage ms.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

from mqc_edge.atomic import write_atomically, write_text_atomically
from mqc_edge.data.dataset import RVOSDataset

DEMO_VARIANTS = ("mqc", "sam2-box", "flow-gt-mask")
STRIP_FRAMES = 4
TRUTH_COLOUR, MASK_COLOUR = (255, 255, 0), (255, 64, 32)


def run_demo(out_dir: Path, model_dir_of, videos: int, frames: int, size: tuple[int, int], seed: int,
             threads: int | None = None, encode_ahead: bool = False) -> dict:
    """Everything above; `model_dir_of()` returns the export directory (the CLI resolves `default`).
    `threads` is per onnxruntime session (None: 1 with encode-ahead, 2 serial). Returns the report
    written to O/report.json; its `scheduling` says which of the two ran."""
    from mqc_edge.benchmarks.accuracy_eval import AccuracyEvalConfig, format_accuracy, run_accuracy_eval
    from mqc_edge.data.synth import generate_dataset

    out_dir = Path(out_dir)
    threads = threads or (1 if encode_ahead else 2)
    started = time.perf_counter()
    dataset = generate_dataset(out=out_dir / "data", videos=videos, frames=frames, size=size, seed=seed, split="test")
    print(f"[1/4] {videos} synthetic satellite clips x {frames} frames at {size[0]}x{size[1]} -> {out_dir / 'data'}")
    model_dir = model_dir_of()
    print(f"[2/4] default model export: {model_dir}")
    accuracy = run_accuracy_eval(AccuracyEvalConfig(model_dir=model_dir, dataset=out_dir / "data",
                                                    out_dir=out_dir / "eval", variants=DEMO_VARIANTS, threads=threads,
                                                    encode_ahead=encode_ahead))
    print("[3/4] J&F on these clips (onnxruntime CPU; flow-gt-mask is a BASELINE given the answer on frame 0):")
    print(format_accuracy(accuracy))
    run = _run_first_clip(dataset, model_dir, out_dir / "run", threads, encode_ahead)
    scheduling = _scheduling(encode_ahead, threads)
    report = _report(accuracy, run, out_dir, time.perf_counter() - started) | {"scheduling": scheduling}
    write_text_atomically(out_dir / "report.json", json.dumps(report, indent=1, allow_nan=False) + "\n")
    print(f"[4/4] `mqc-edge run` on {run['video']} from {run['text']!r}: masks {run['masks']}, overlay "
          f"{run['overlay']}, strip {run['strip']}")
    print(f"report: {out_dir / 'report.json'} (MQC mode J&F {report['J&F']:.3f}, {report['fps']:.1f} FPS, "
          f"{report['ms_per_frame']:.1f} ms/frame, {scheduling}; total {report['demo_seconds']:.0f} s)")
    return report


def _scheduling(encode_ahead: bool, threads: int) -> str:
    if encode_ahead:
        return f"encode-ahead, {threads} thread(s) per stage in flight"
    return f"serial, {threads} thread(s)"


def _run_first_clip(dataset: RVOSDataset, model_dir: Path, out: Path, threads: int, encode_ahead: bool) -> dict:
    """`mqc-edge run` (MQC mode, onnxruntime) on the first clip from its first expression, plus a strip."""
    from mqc_edge.runtime.config import TrackerConfig
    from mqc_edge.runtime.model_source import load_model
    from mqc_edge.runtime.multi_tracker import MultiTracker
    from mqc_edge.runtime.run import run_video

    video = next(v for v in dataset.videos.values() if v.expressions)
    expression = next(iter(video.expressions.values()))
    source = load_model(model_dir, "onnxruntime", threads=threads)
    config = TrackerConfig(mode="mqc", encode_ahead=encode_ahead)
    tracker = MultiTracker(source.backend, config, source.tokenizer, source.text_cache)
    frames = ((name, dataset.read_frame(video.name, name)) for name in video.frames)
    run_video(tracker, frames, out, [{"text": expression.text}], overlay_fps=8.0)
    strip = _write_strip(dataset, video, expression.obj_id, out)
    return {"video": video.name, "text": expression.text, "masks": str(out / "masks"),
            "overlay": str(out / "overlay.mp4"), "strip": str(strip), "results": str(out / "results.jsonl")}


def _write_strip(dataset: RVOSDataset, video, obj_id: str, run_dir: Path) -> Path:
    """A few frames side by side: the predicted mask tinted, the ground truth outlined."""
    import cv2

    picks = np.linspace(0, len(video.frames) - 1, STRIP_FRAMES).round().astype(int)
    tiles = []
    for index in picks:
        name = video.frames[index]
        rgb = dataset.read_frame(video.name, name).astype(np.float32)
        mask = np.asarray(Image.open(run_dir / "masks" / f"{name}.png")) > 0
        rgb[mask] = 0.5 * rgb[mask] + 0.5 * np.array(MASK_COLOUR, np.float32)
        tile = rgb.astype(np.uint8)
        truth = dataset.object_mask(video.name, name, obj_id).astype(np.uint8)
        contours, _ = cv2.findContours(truth, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(tile, contours, -1, TRUTH_COLOUR, 1)
        tiles.append(tile)
    path = run_dir / "strip.png"
    write_atomically(path, Image.fromarray(np.concatenate(tiles, axis=1)).save)
    return path


def _report(accuracy: dict, run: dict, out_dir: Path, seconds: float) -> dict:
    """Headline = MQC mode from text; every variant's row and the run's per-stage medians beside it."""
    mqc = accuracy["variants"]["mqc"]
    stage_ms = _stage_medians(Path(run["results"]))
    return {
        "J&F": mqc["J&F"], "J": mqc["J"], "F": mqc["F"],
        "ms_per_frame": mqc["ms_per_frame"], "fps": 1e3 / mqc["ms_per_frame"],
        "stage_ms_median": stage_ms,
        "variants": accuracy["variants"],
        "run": run, "eval": str(out_dir / "eval" / "accuracy.md"), "demo_seconds": seconds,
    }


def _stage_medians(results_jsonl: Path) -> dict[str, float]:
    """Median ms per stage over the frames of a run (results.jsonl `timings_ms`)."""
    per_stage: dict[str, list[float]] = {}
    for line in results_jsonl.read_text().splitlines():
        for stage, ms in json.loads(line)["timings_ms"].items():
            per_stage.setdefault(stage, []).append(ms)
    return {stage: float(np.median(values)) for stage, values in sorted(per_stage.items())}
