"""The kernels onnxruntime's CPU provider runs for each stage of an export, by dtype, from its
profiler.

The CPU provider has few FP16 kernels; for a node without one, onnxruntime's graph
transformer (InsertCastTransformer) wraps the FP32 kernel in Casts. The profiler shows which
kernels ran with FP16 inputs and how long the inserted Casts took, so the docs can say what
runs instead of FP16 rather than guess. Per-stage ms of several exports side by side come from
`mqc-edge bench FP32_DIR BUILD_DIR ...` (harness.py), one interleaved run.

    python -m mqc_edge.benchmarks.precision_bench DIR [DIR ...] --out R --threads 2
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import onnxruntime as ort

from mqc_edge.atomic import write_text_atomically
from mqc_edge.contract import stage_specs
from mqc_edge.export.inputs import random_inputs
from mqc_edge.runtime.manifest import load_manifest
from mqc_edge.runtime.backends.ort_backend import session_options


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
    args = parser.parse_args(argv)
    report = {"threads": args.threads, "kernels": {str(path): cpu_kernels(path, args.threads) for path in args.exports}}
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomically(args.out / "precision_bench.json", json.dumps(report, indent=1) + "\n")
    print(json.dumps({export: {stage: round(k["ms"], 2) for stage, k in kernels.items()}
                      for export, kernels in report["kernels"].items()}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
