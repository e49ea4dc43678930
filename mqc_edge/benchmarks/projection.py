"""A device we do not have, on paper: per-stage roofline floors from the exported graphs.

The FLOPs and bytes of each stage come from `cost_model.graph_cost` on the export's ONNX
graphs (the same counts the bench reports); the device is a data-sheet profile. The floor of
a stage at a precision is max(compute time, memory time):

- compute time = contraction FLOPs / the precision's peak (FP32 on the CUDA cores, FP16 and
  INT8 on the tensor cores, dense) + element-wise FLOPs / the FP32 CUDA-core peak (softmax,
  LayerNorm and the like stay off the tensor cores, and in FP32 islands, DESIGN.md section 6);
- memory time = minimal bytes (weights + graph inputs + outputs, at the precision's element
  size; the graphs are FP32, so FP16 halves them and INT8 quarters them) / bandwidth.

A floor, never a prediction: no launch overhead, no cache misses, clocks at their maximum
(MAXN). A measured time on the device divides by it to give the fraction of the floor.

    python -m mqc_edge.benchmarks.projection default export480 --devices jetson-agx-orin,jetson-orin-nx
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from mqc_edge.benchmarks.cost_model import GraphCost, graph_cost
from mqc_edge.contract import TRACKING_PROMPT_TOKENS
from mqc_edge.errors import ConfigError, MqcEdgeError

PRECISIONS = ("fp32", "fp16", "int8")
ELEMENT_BYTES = {"fp32": 4, "fp16": 2, "int8": 1}
FRAME_STAGES = ("image_encoder", "memory_attention", "dami_attention", "mask_decoder", "memory_encoder",
                "quality_head")
"""Stages that run on every tracked frame (those an export has): SAM 2 mode reads memory with
memory_attention, MQC mode with dami_attention; both are listed, each mode uses one (see
`frame_floor_ms`)."""


@dataclass(frozen=True)
class DeviceProfile:
    """Peak throughputs of one device's GPU at maximum clocks, and its memory bandwidth."""

    name: str
    fp32_tflops: float  # CUDA cores, one FMA = 2 FLOPs
    fp16_tflops: float  # tensor cores, dense (structured sparsity doubles it; not used here)
    int8_tops: float  # tensor cores, dense
    bandwidth_gbps: float  # DRAM, GB/s (1e9 bytes)
    source: str  # where the numbers come from (docs/benchmarks.md)

    def contraction_peak_flops(self, precision: str) -> float:
        """FLOP/s of MatMul/Conv at `precision` ("fp32", "fp16", "int8"); ConfigError otherwise."""
        peaks = {"fp32": self.fp32_tflops, "fp16": self.fp16_tflops, "int8": self.int8_tops}
        if precision not in peaks:
            raise ConfigError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
        return peaks[precision] * 1e12


# AGX Orin 64GB, MAXN: 171 sparse INT8 TOPS on the GPU (NVIDIA/Deep-Learning-Accelerator-SW README,
# GPU/DLA split table) -> 85.5 dense INT8, 42.75 dense FP16 (Ampere: INT8 = 2x FP16, sparse = 2x
# dense); 2048 CUDA cores at 1.3 GHz -> 5.32 FP32 TFLOPS. Orin NX 16GB: 8 SMs (1024 cores, 32 tensor
# cores) at 918 MHz (Jetson Orin NX series data sheet) -> 1.88 FP32 TFLOPS and, per SM-clock as the
# AGX, 15.1 dense FP16 / 30.2 dense INT8 (60 sparse INT8, which with its 40 DLA TOPS makes the data
# sheet's 100 TOPS). Bandwidths from the module data sheets.
PROFILES = {
    "jetson-agx-orin": DeviceProfile("jetson-agx-orin", 2048 * 2 * 1.3e9 / 1e12, 42.75, 85.5, 204.8,
                                     "Jetson AGX Orin 64GB, MAXN (GPU 1.3 GHz)"),
    "jetson-orin-nx": DeviceProfile("jetson-orin-nx", 1024 * 2 * 0.918e9 / 1e12, 42.75 * 0.5 * 0.918 / 1.3,
                                    85.5 * 0.5 * 0.918 / 1.3, 102.4, "Jetson Orin NX 16GB, MAXN (GPU 918 MHz)"),
}


def device_profile(name: str) -> DeviceProfile:
    """The profile called `name`; ConfigError naming the known ones otherwise."""
    if name not in PROFILES:
        raise ConfigError(f"device {name!r}: no profile; known: {', '.join(sorted(PROFILES))}")
    return PROFILES[name]


def floor_ms(cost: GraphCost, device: DeviceProfile, precision: str) -> float:
    """Roofline floor of one graph on `device` at `precision`, ms (module docstring)."""
    compute_s = (cost.flops_compute / device.contraction_peak_flops(precision)
                 + cost.flops_elementwise / device.contraction_peak_flops("fp32"))
    memory_s = cost.bytes_min * ELEMENT_BYTES[precision] / ELEMENT_BYTES["fp32"] / (device.bandwidth_gbps * 1e9)
    return max(compute_s, memory_s) * 1e3


def export_costs(export_dir: Path, objects: int = 1) -> dict[str, GraphCost]:
    """stage -> GraphCost of every per-frame stage of an export (`FRAME_STAGES`), symbolic dims
    pinned as the bench pins them; ManifestMismatchError if the export does not verify."""
    from mqc_edge.runtime.manifest import load_manifest

    manifest = load_manifest(Path(export_dir))
    symbols = {"prompt_tokens": TRACKING_PROMPT_TOKENS, "objects": objects}
    return {stage: graph_cost(manifest.stage_file(stage), symbols)
            for stage in FRAME_STAGES if stage in manifest.content["stages"]}


def frame_floor_ms(floors: dict[str, float]) -> float:
    """ms per tracked frame: the sum over stages, with DAMI replacing memory attention when both
    exist (an MQC export runs MQC mode)."""
    return sum(ms for stage, ms in floors.items()
               if not (stage == "memory_attention" and "dami_attention" in floors))


def project(costs: dict[str, GraphCost], devices: list[str]) -> dict[str, dict[str, dict[str, float]]]:
    """device -> precision -> {stage: floor ms, ..., "frame": ms/frame, "fps": frames/s at the floor}."""
    table = {}
    for name in devices:
        device = device_profile(name)
        table[name] = {}
        for precision in PRECISIONS:
            floors = {stage: floor_ms(cost, device, precision) for stage, cost in costs.items()}
            frame = frame_floor_ms(floors)
            table[name][precision] = {**floors, "frame": frame, "fps": 1e3 / frame}
    return table


def markdown(label: str, costs: dict[str, GraphCost], table: dict[str, dict[str, dict[str, float]]]) -> str:
    """One markdown table per model: its GFLOP and FP32 MB per stage, then a row per device and
    precision with the floor in ms per stage and per frame."""
    stages = list(costs)
    lines = [f"| {label} | precision | " + " | ".join(stages) + " | ms/frame | FPS ceiling |",
             "|---|---|" + "---:|" * (len(stages) + 2),
             "| GFLOP | | " + " | ".join(f"{costs[s].flops / 1e9:.2f}" for s in stages) + " | | |",
             "| MB min (fp32) | | " + " | ".join(f"{costs[s].bytes_min / 1e6:.1f}" for s in stages) + " | | |"]
    for device, by_precision in table.items():
        for precision, row in by_precision.items():
            cells = " | ".join(f"{row[stage]:.3f}" for stage in stages)
            lines.append(f"| {device} | {precision} | {cells} | {row['frame']:.3f} | {row['fps']:.0f} |")
    return "\n".join(lines)


def _resolve(model: str) -> Path:
    from mqc_edge.default_model import cache_root, resolve_model

    return resolve_model(model, cache_root(os.environ), log=lambda line: print(line, file=sys.stderr))


def main(argv: list[str] | None = None) -> int:
    """CLI: one or more MODELs (`default` or export directories) -> markdown tables (and --json)."""
    parser = argparse.ArgumentParser(prog="python -m mqc_edge.benchmarks.projection",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="+", help="`default` or an `mqc-edge export` directory")
    parser.add_argument("--devices", default=",".join(PROFILES), help="comma-separated profile names")
    parser.add_argument("--objects", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="write every number here")
    args = parser.parse_args(argv)
    try:
        devices = [device_profile(name.strip()).name for name in args.devices.split(",")]
        costs = {model: export_costs(_resolve(model), args.objects) for model in args.models}
    except MqcEdgeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    tables = {model: project(model_costs, devices) for model, model_costs in costs.items()}
    for model, table in tables.items():
        print(f"\nPROJECTION (roofline floor, not a measurement): {model}\n\n"
              f"{markdown(Path(model).name, costs[model], table)}")
    if args.json:
        args.json.write_text(json.dumps(tables, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
