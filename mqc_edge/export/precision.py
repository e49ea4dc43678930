"""One stage graph to reduced precision: FP16 with FP32 islands, or INT8 with explicit Q/DQ.

Both conversions are maintained tools, configured here, never re-written (DESIGN section 6):
onnxruntime's transformers `convert_float_to_float16` writes FP16 into the graph and keeps the
blocked ops (the islands) in FP32 behind Casts (onnxconverter-common 1.16's copy of it writes
graphs onnxruntime refuses when a graph output is also read inside the graph, as the decoder's
`object_score` is); onnxruntime's `quantize_static` inserts
QuantizeLinear/DequantizeLinear pairs with scales from recorded FP32 feeds. Stage inputs and
outputs stay float32 either way, so the stage contract, and every backend, hold unchanged.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import onnx
from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.transformers import float16
from onnxruntime.transformers.onnx_model import OnnxModel

from mqc_edge.atomic import write_atomically
from mqc_edge.calibration.reader import Feeds, StageFeedReader
from mqc_edge.errors import ConfigError

PRECISIONS = ("fp32", "fp16", "int8", "mixed")
"""What `mqc-edge build` makes; mixed = INT8 for the stages within the gate alone, FP32 elsewhere."""
FP16_ISLANDS = (
    "LayerNormalization", "Softmax", "ReduceMean", "ReduceSum", "ReduceMax", "ReduceL2", "Pow", "Sqrt", "Exp",
    "Erf", "Sin", "Cos", "CumSum", "Range", "Resize",
)
"""Ops kept in FP32: normalisation statistics, softmax and reductions overflow or lose digits in
FP16 (sums of squares over 256 channels), RoPE's Sin/Cos need FP32 angles, and Resize of the
memory encoder's mask path is blocked by the converter itself (its DEFAULT_OP_BLOCK_LIST)."""
CALIBRATION_METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}


@dataclass(frozen=True)
class Fp16Plan:
    """How a stage goes to FP16."""

    islands: tuple[str, ...] = FP16_ISLANDS  # op types kept FP32, on top of the converter's own block list
    max_finite: float = 1e4  # the converter's default: larger FP32 constants are clamped (FP16 max is 65504)


@dataclass(frozen=True)
class Int8Plan:
    """How a stage goes to INT8 (QDQ)."""

    method: str = "minmax"  # one of CALIBRATION_METHODS
    op_types: tuple[str, ...] = ("MatMul", "Conv", "Gemm")  # the ops with weights and u8s8 kernels
    # (MLAS); elementwise ops stay FP32, where Q/DQ around them would only add work
    per_channel: bool = True  # weight scales per output channel (DESIGN section 6)


def to_fp16(model: onnx.ModelProto, plan: Fp16Plan = Fp16Plan()) -> onnx.ModelProto:
    """FP16 weights and activations; the islands and every graph input and output stay FP32."""
    islands = sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | set(plan.islands))
    converted = OnnxModel(float16.convert_float_to_float16(model, max_finite_val=plan.max_finite, keep_io_types=True,
                                                           op_block_list=islands))
    converted.topological_sort()  # the converter appends its input Casts last; ONNX (and TensorRT) want order
    return converted.model


def write_fp16(source: Path, target: Path, plan: Fp16Plan = Fp16Plan()) -> None:
    model = to_fp16(onnx.load(str(source)), plan)
    onnx.checker.check_model(model)
    write_atomically(target, lambda tmp: onnx.save(model, str(tmp)))


def _one_shape(feeds: list[Feeds]) -> list[Feeds]:
    """The calls of the most frequent input shapes (first seen wins a tie): onnxruntime's histogram
    calibrators stack every call's activations into one array, so shapes that vary with the
    symbolic dims (prompt tokens, objects) cannot be mixed; MinMax reduces per call and takes all."""
    shapes = [tuple(sorted((name, array.shape) for name, array in call.items())) for call in feeds]
    common = max(dict.fromkeys(shapes), key=shapes.count)
    return [call for call, shape in zip(feeds, shapes) if shape == common]


def quantizable(source: Path, plan: Int8Plan = Int8Plan()) -> bool:
    """Whether the graph has an op the plan quantizes (a graph without one stays FP32)."""
    return any(node.op_type in plan.op_types for node in onnx.load(str(source), load_external_data=False).graph.node)


def write_int8(source: Path, target: Path, feeds: list[Feeds], plan: Int8Plan = Int8Plan()) -> None:
    """Static QDQ quantization: u8 activations (per tensor), s8 weights (per channel), the scales
    from `feeds`, a stage's inputs recorded from the FP32 pipeline."""
    if plan.method not in CALIBRATION_METHODS:
        raise ConfigError(f"calibration method: expected one of {sorted(CALIBRATION_METHODS)}, got {plan.method!r}")
    if not feeds:
        raise ConfigError(f"{source}: no calibration feeds for this stage (it never ran on the calibration clips)")
    if plan.method != "minmax":
        feeds = _one_shape(feeds)
    with tempfile.TemporaryDirectory(prefix="mqc-int8-") as scratch:
        staged = Path(scratch) / target.name
        quantize_static(
            str(source), str(staged), StageFeedReader(feeds), quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(plan.op_types), per_channel=plan.per_channel,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=CALIBRATION_METHODS[plan.method],
        )
        model = onnx.load(str(staged))
    write_atomically(target, lambda tmp: onnx.save(model, str(tmp)))
