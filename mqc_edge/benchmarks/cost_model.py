"""FLOPs and bytes per stage, read from the exported ONNX graphs, and the time floor they imply.

Counts come from the graph a backend actually runs, never typed by hand, so a fusion or a
shape change shows up in the report. A multiply-add is 2 FLOPs. Attention is counted whatever
op expresses it: as its MatMuls when decomposed, or by the fused `Attention` /
`MultiHeadAttention` op's own formula. Element-wise work is counted one FLOP per output
element (it is bandwidth, not compute, that bounds it; reported separately).

Bytes: `bytes_min` is what must cross memory at least once (weights, graph inputs and outputs):
the floor's bandwidth term. `bytes_touched` sums every node's inputs and outputs: what moves
when no intermediate stays in cache, an upper bound.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import shape_inference
from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

COMPUTE_OPS = ("MatMul", "MatMulInteger", "Gemm", "Conv", "ConvTranspose", "Attention", "MultiHeadAttention", "Einsum")
"""Ops whose FLOPs scale with a contraction; everything else is element-wise or data movement."""

MOVEMENT_OPS = {
    "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Concat", "Split", "Slice", "Gather",
    "Shape", "Constant", "Identity", "Expand", "Cast", "Tile", "Pad", "ConstantOfShape", "Range",
    "ScatterND", "GatherElements", "Resize",
}
"""Ops that move data without arithmetic: no FLOPs, their bytes still count."""


@dataclass(frozen=True)
class GraphCost:
    """Cost of one ONNX graph at its static shapes."""

    flops_compute: int  # FLOPs of COMPUTE_OPS
    flops_elementwise: int  # one per output element of the remaining arithmetic ops
    bytes_min: int  # weights + graph inputs + graph outputs
    bytes_touched: int  # sum over nodes of input + output bytes
    flops_by_op: dict[str, int] = field(default_factory=dict)
    unknown_shapes: tuple[str, ...] = ()  # tensors whose shape inference failed (their cost is 0)

    @property
    def flops(self) -> int:
        return self.flops_compute + self.flops_elementwise

    def floor_ms(self, peak_gflops: float, bandwidth_gbps: float) -> float:
        """Roofline floor: the slower of compute at peak and the minimal traffic at full bandwidth."""
        return max(self.flops / (peak_gflops * 1e9), self.bytes_min / (bandwidth_gbps * 1e9)) * 1e3


def _pinned(model: onnx.ModelProto, symbols: dict[str, int]) -> onnx.ModelProto:
    """A copy whose graph inputs have their symbolic dims set: inference then resolves every
    tensor downstream (left symbolic, a Reshape or Concat on them yields fresh unknown dims)."""
    pinned = onnx.ModelProto()
    pinned.CopyFrom(model)
    for value in pinned.graph.input:
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_param") and dim.dim_param in symbols:
                dim.dim_value = symbols[dim.dim_param]
    return pinned


def _inferred(model: onnx.ModelProto) -> onnx.ModelProto:
    """onnxruntime's symbolic shape inference where it covers the graph, else onnx's.

    Shapes the exporter computes at run time from `Shape` (a Reshape to [batch, tokens, heads,
    -1]) stay unknown to onnx's data propagation (115 tensors of the mask decoder uncounted);
    onnxruntime's resolves them but raises on some ops it lacks (the fused `Attention`, DAMI's
    graph), and whatever is still unknown is listed in `GraphCost.unknown_shapes`."""
    try:
        return SymbolicShapeInference.infer_shapes(model, auto_merge=True)
    except Exception:  # noqa: BLE001 - any failure of its partial op coverage means: use onnx's
        return shape_inference.infer_shapes(model, data_prop=True)


def _shape_table(model: onnx.ModelProto, symbols: dict[str, int]) -> dict[str, tuple[tuple[int, ...], int]]:
    """name -> (shape, bytes per element) for every tensor shape inference resolves."""
    inferred = _inferred(_pinned(model, symbols))
    table = {}
    graph = inferred.graph
    for value in list(graph.input) + list(graph.output) + list(graph.value_info):
        tensor_type = value.type.tensor_type
        dims = []
        for dim in tensor_type.shape.dim:
            if dim.HasField("dim_value"):
                dims.append(dim.dim_value)
            elif dim.dim_param in symbols:
                dims.append(symbols[dim.dim_param])
            else:
                break
        else:
            itemsize = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)).itemsize
            table[value.name] = (tuple(dims), itemsize)
    for init in graph.initializer:
        array_dtype = onnx.helper.tensor_dtype_to_np_dtype(init.data_type)
        table[init.name] = (tuple(init.dims), np.dtype(array_dtype).itemsize)
    return table


def _attr(node: onnx.NodeProto, name: str, default: object) -> object:
    for attribute in node.attribute:
        if attribute.name == name:
            return onnx.helper.get_attribute_value(attribute)
    return default


def node_flops(node: onnx.NodeProto, shapes: dict[str, tuple[tuple[int, ...], int]]) -> int:
    """FLOPs of one node (2 per multiply-add) given resolved input/output shapes."""
    def shape(name: str) -> tuple[int, ...]:
        return shapes[name][0]

    out = shape(node.output[0])
    if node.op_type in ("MatMul", "MatMulInteger"):
        return 2 * math.prod(out) * shape(node.input[0])[-1]
    if node.op_type == "Gemm":
        a = shape(node.input[0])
        return 2 * math.prod(out) * (a[0] if _attr(node, "transA", 0) else a[1])
    if node.op_type == "Conv":
        weight = shape(node.input[1])  # [Cout, Cin/group, kh, kw]
        return 2 * math.prod(out) * math.prod(weight[1:])
    if node.op_type == "ConvTranspose":
        weight = shape(node.input[1])  # [Cin, Cout/group, kh, kw]
        return 2 * math.prod(shape(node.input[0])) * math.prod(weight[1:])
    if node.op_type in ("Attention", "MultiHeadAttention"):
        return _attention_flops(shape(node.input[0]), shape(node.input[1]), shape(node.input[2]))
    if node.op_type == "Einsum":
        raise NotImplementedError("Einsum FLOPs are not counted; export attention as MatMul or Attention")
    if node.op_type in MOVEMENT_OPS:
        return 0
    return math.prod(out)


def _attention_flops(query: tuple[int, ...], key: tuple[int, ...], value: tuple[int, ...]) -> int:
    """Q K^T plus P V: 2 * B * Lq * Lk * (width of Q/K + width of V); 3-D [B, L, width] or
    4-D [B, heads, L, head_dim] inputs (ONNX Attention and com.microsoft MultiHeadAttention)."""
    if len(query) == 4:
        batch, length_q, width_qk = query[0], query[2], query[1] * query[3]
    else:
        batch, length_q, width_qk = query[0], query[1], query[2]
    width_v = value[1] * value[3] if len(value) == 4 else value[2]
    return 2 * batch * length_q * key[-2] * (width_qk + width_v)


def _nbytes(name: str, shapes: dict[str, tuple[tuple[int, ...], int]]) -> int:
    shape, itemsize = shapes.get(name, ((0,), 0))
    return math.prod(shape) * itemsize


def graph_cost(path: Path | onnx.ModelProto, symbols: dict[str, int] | None = None) -> GraphCost:
    """Cost of an ONNX graph; `symbols` pins symbolic dims (e.g. {"prompt_tokens": 2})."""
    model = onnx.load(str(path)) if isinstance(path, (str, Path)) else path
    shapes = _shape_table(model, symbols or {})
    by_op: Counter[str] = Counter()
    unknown, touched = [], 0
    for node in model.graph.node:
        names = [name for name in list(node.input) + list(node.output) if name]
        missing = [name for name in names if name not in shapes]
        if missing:
            unknown.extend(missing)
            continue
        by_op[node.op_type] += node_flops(node, shapes)
        touched += sum(_nbytes(name, shapes) for name in names)
    compute = sum(flops for op, flops in by_op.items() if op in COMPUTE_OPS)
    elementwise = sum(flops for op, flops in by_op.items() if op not in COMPUTE_OPS)
    boundary = [init.name for init in model.graph.initializer] + [v.name for v in model.graph.input] + [
        v.name for v in model.graph.output
    ]
    bytes_min = sum(_nbytes(name, shapes) for name in dict.fromkeys(boundary))
    return GraphCost(compute, elementwise, bytes_min, touched, dict(by_op), tuple(dict.fromkeys(unknown)))



PEAK_OF_PRECISION = {"int8": "u8s8", "int8-dynamic": "u8s8"}
"""The peak a stage's floor is taken against, by its manifest precision: INT8 (QDQ or dynamic) stages run
u8s8 MatMulInteger-class kernels; every other stage the FP32 MatMul (the CPU provider runs FP16
graphs' MatMul/Gemm/Conv as FP32 kernels between Casts, docs/precision.md)."""


def stage_cost(path: Path | onnx.ModelProto, precision: str, peaks: dict[str, float], bandwidth_gbps: float,
               symbols: dict[str, int] | None = None) -> dict[str, float | str]:
    """One stage's cost and floor. `peaks`: {"fp32": GFLOP/s, "u8s8": GOP/s}, measured in the run
    (peak.py); the stage's own peak by PEAK_OF_PRECISION. GFLOP and GOP count alike (2 per multiply-add)."""
    cost = graph_cost(path, symbols)
    peak = PEAK_OF_PRECISION.get(precision, "fp32")
    return {"precision": precision, "peak": peak, "peak_gops": peaks[peak], "gflop": cost.flops / 1e9,
            "gflop_compute": cost.flops_compute / 1e9, "mbytes_min": cost.bytes_min / 1e6,
            "floor_ms": cost.floor_ms(peaks[peak], bandwidth_gbps)}


def stage_efficiency(cost: dict[str, float | str], ms: float) -> dict[str, float | str]:
    """What a stage measured at `ms` per call achieved: all its GFLOP per second, its fraction of the
    floor, and its contraction ops (MatMul/Gemm/Conv, what the peak measures) in GOP/s and as a
    fraction of the stage's own peak (FP32 MatMul, or u8s8 for an INT8 stage)."""
    compute_gops = cost["gflop_compute"] / (ms / 1e3)
    return {"gflop": cost["gflop"], "achieved_gflops": cost["gflop"] / (ms / 1e3), "fraction_of_floor": cost["floor_ms"] / ms,
            "achieved_compute_gops": compute_gops, "peak": cost["peak"], "fraction_of_peak": compute_gops / cost["peak_gops"]}
