"""Exports of one model at several precisions, side by side: per-stage ms, interleaved, and the
kernels onnxruntime's CPU provider runs for each stage, by dtype, from its profiler.

The CPU provider has few FP16 kernels; for a node without one, onnxruntime's graph
transformer (InsertCastTransformer) wraps the FP32 kernel in Casts. The profiler shows which
kernels ran with FP16 inputs and how long the inserted Casts took, so the docs can say what
runs instead of FP16 rather than guess.

    python -m mqc_edge.benchmarks.precision_bench DIR [DIR ...] --out R --threads 2
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from mqc_edge.atomic import write_text_atomically
from mqc_edge.calibration.clips import ClipSet, load_clips
from mqc_edge.calibration.reader import clip_modes, track_prompted
from mqc_edge.contract import stage_specs
from mqc_edge.export.inputs import random_inputs
from mqc_edge.export.precision_gate import tokenizer_of
from mqc_edge.runtime.manifest import load_manifest
from mqc_edge.runtime.backends.ort_backend import OrtBackend, session_options


def stage_timings(exports: list[Path], clip_set: ClipSet, repeats: int, threads: int) -> dict[str, dict[str, float]]:
    """{export: {stage: median ms per call}} over `repeats` rounds, the exports interleaved in
    each round so that load on the machine falls on all of them alike."""
    backends = {str(path): OrtBackend(path, threads=threads) for path in exports}
    first = next(iter(backends.values()))
    clips = load_clips(clip_set, first.geometry.image_size)
    times: dict[str, dict[str, list[float]]] = {name: defaultdict(list) for name in backends}
    for _ in range(repeats):
        for name, backend in backends.items():
            tokenizer = tokenizer_of(backend)
            for clip in clips:
                for mode in clip_modes(clip, tokenizer):
                    for result in track_prompted(backend, clip, mode, tokenizer)[1:]:  # frame 0: first-call costs
                        for stage, ms in result.timings_ms.items():
                            times[name][stage].append(ms)
    return {name: {stage: float(np.median(values)) for stage, values in sorted(per.items())}
            for name, per in times.items()}


def cpu_kernels(export_dir: Path, threads: int, runs: int = 6) -> dict[str, dict[str, Any]]:
    """Per stage: ms of node kernels by (op, dtype of its first float input), from the profiler."""
    manifest = load_manifest(export_dir)
    specs = stage_specs(manifest.geometry)
    report = {}
    for index, (name, entry) in enumerate(manifest.content["stages"].items()):
        spec_inputs = random_inputs(specs[name], seed=index)
        with tempfile.TemporaryDirectory() as scratch:
            options = session_options(threads)
            options.enable_profiling = True
            options.profile_file_prefix = str(Path(scratch) / name)
            session = ort.InferenceSession(str(manifest.stage_file(name)), options, providers=["CPUExecutionProvider"])
            for _ in range(runs):
                session.run(None, spec_inputs)
            events = json.loads(Path(session.end_profiling()).read_text())
        report[name] = {"precision": entry.get("precision", "fp32"), **_kernel_summary(events, runs)}
    return report


def _kernel_summary(events: list[dict], runs: int) -> dict[str, Any]:
    """The first run (allocations, prepacking) is left out: ms are per run over the other runs."""
    first_run_end = min(e["ts"] + e["dur"] for e in events if e.get("name") == "model_run")
    by_kernel: dict[str, float] = defaultdict(float)
    for event in events:
        if event.get("cat") != "Node" or not event["name"].endswith("_kernel_time") or event["ts"] < first_run_end:
            continue
        args = event["args"]
        dtypes = [next(iter(t)) for t in args.get("input_type_shape", []) if next(iter(t)) in ("float", "float16")]
        by_kernel[f"{args['op_name']}:{dtypes[0] if dtypes else '-'}"] += event["dur"] / 1e3 / (runs - 1)
    total = sum(by_kernel.values())
    fp16 = sum(ms for key, ms in by_kernel.items() if key.endswith(":float16"))
    casts = sum(ms for key, ms in by_kernel.items() if key.startswith("Cast:"))
    top = dict(sorted(by_kernel.items(), key=lambda kv: -kv[1])[:8])
    fp16_ops = sorted({key.split(":")[0] for key in by_kernel if key.endswith(":float16")})
    return {"ms": total, "fp16_kernel_ms": fp16, "cast_ms": casts, "fp16_ops": fp16_ops, "top_kernels_ms": top}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("exports", type=Path, nargs="+")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--clips", type=int, default=2)
    parser.add_argument("--frames", type=int, default=8)
    args = parser.parse_args(argv)
    report = {"threads": args.threads,
              "stage_ms": stage_timings(args.exports, ClipSet(clips=args.clips, frames=args.frames), args.repeats,
                                        args.threads),
              "kernels": {str(path): cpu_kernels(path, args.threads) for path in args.exports}}
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomically(args.out / "precision_bench.json", json.dumps(report, indent=1) + "\n")
    print(json.dumps(report["stage_ms"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
