"""One stage graph to reduced precision: FP16 or BF16 with FP32 islands, or INT8 (explicit Q/DQ, or dynamic).

Both conversions are maintained tools, configured here, never re-written (DESIGN section 6):
onnxruntime's transformers `convert_float_to_float16` writes FP16 into the graph and keeps the
blocked ops (the islands) in FP32 behind Casts (onnxconverter-common 1.16's copy of it writes
graphs onnxruntime refuses when a graph output is also read inside the graph, as the decoder's
`object_score` is); onnxruntime's `quantize_static` inserts
QuantizeLinear/DequantizeLinear pairs with scales from recorded FP32 feeds; its `quantize_dynamic`
(the `dynamic` INT8 scheme) quantizes weights once and activations per call (DynamicQuantizeLinear
+ MatMulInteger), a CPU plan TensorRT cannot run; NVIDIA ModelOpt's ONNX PTQ (the `modelopt` INT8
scheme, an optional extra) places Q/DQ where TensorRT fuses them and calibrates on onnxruntime's
CPU provider from the same feeds. Stage inputs and outputs stay float32 every way,
so the stage contract, and every backend, hold unchanged. BF16 takes the FP16 converter's
decisions (the same islands and Casts) with the 16-bit type swapped and every weight rounded from
its FP32 original (no converter in reach writes BF16: onnxruntime's and onnxconverter-common's are
FP16-only, NVIDIA ModelOpt's AutoCast needs onnxruntime-gpu and CuPy).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import ml_dtypes
import numpy as np
import onnx
from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static
from onnxruntime.transformers import float16
from onnxruntime.transformers.onnx_model import OnnxModel

from mqc_edge.atomic import write_atomically
from mqc_edge.calibration.reader import Feeds, StageFeedReader
from mqc_edge.errors import ConfigError

PRECISIONS = ("fp32", "fp16", "bf16", "int8", "mixed")
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


INT8_SCHEMES = {"static": "int8", "dynamic": "int8-dynamic", "modelopt": "int8"}
"""INT8 scheme -> the stage precision the manifest records. static: explicit Q/DQ, activation
scales calibrated on real frames (every backend; TensorRT's INT8 path). dynamic: activation
scales computed per call from the tensor itself (onnxruntime CPU only; docs/precision.md).
modelopt: explicit Q/DQ as NVIDIA ModelOpt places them for TensorRT (s8 activations, symmetric),
calibrated like static (every backend)."""
MODELOPT_METHODS = {"minmax": "max", "entropy": "entropy"}
"""Our calibration method -> ModelOpt's name for it (ModelOpt has no percentile calibration)."""
MODELOPT_INSTALL = "pip install 'mqc-edge[modelopt]'"
DYNAMIC_OP_TYPES = ("MatMul",)
"""What the dynamic scheme asks to quantize: MatMul becomes MatMulInteger (u8s8, MLAS), and so does
Gemm, which onnxruntime's dynamic quantizer rewrites into MatMul + Add first. Conv would become
ConvInteger, which onnxruntime's CPU provider runs slower than its FP32 Conv (docs/precision.md)."""


@dataclass(frozen=True)
class Int8Plan:
    """How a stage goes to INT8."""

    method: str = "minmax"  # one of CALIBRATION_METHODS (static scheme)
    op_types: tuple[str, ...] = ("MatMul", "Conv", "Gemm")  # the ops with weights and u8s8 kernels
    # (MLAS); elementwise ops stay FP32, where Q/DQ around them would only add work
    per_channel: bool = True  # weight scales per output channel (DESIGN section 6)
    scheme: str = "static"  # one of INT8_SCHEMES
    activation_matmuls: bool = False  # also the MatMuls of two activations (attention's QK^T and AV): the
    # dynamic scheme's scales per call, the static and modelopt schemes' calibrated Q/DQ on both sides. Off:
    # weight nodes only: a softmax output on per-tensor u8 steps (most probabilities under one step) took the
    # image encoder alone from 0.845 to 0.698 mean mask IoU in MQC mode on run A's weights (docs/precision.md)
    excluded_nodes: tuple[str, ...] = ()  # node names (as in the source graph) left FP32 (node sensitivity)
    only_nodes: tuple[str, ...] | None = None  # quantize these nodes alone (None: every weight node of `op_types`,
    # and with `activation_matmuls` every node of them)

    def __post_init__(self) -> None:
        if self.scheme not in INT8_SCHEMES:
            raise ConfigError(f"INT8 scheme: expected one of {sorted(INT8_SCHEMES)}, got {self.scheme!r}")
        if self.scheme == "modelopt" and self.method not in MODELOPT_METHODS:
            raise ConfigError(f"calibration method (modelopt scheme): expected one of {sorted(MODELOPT_METHODS)}, "
                              f"got {self.method!r}")

    @property
    def quantized_ops(self) -> tuple[str, ...]:
        """The op types this plan turns into INT8 kernels."""
        return self.op_types if self.scheme != "dynamic" else tuple(o for o in self.op_types if o in DYNAMIC_OP_TYPES)

    @property
    def stage_precision(self) -> str:
        """What the manifest records for a stage this plan quantized."""
        return INT8_SCHEMES[self.scheme]


def to_fp16(model: onnx.ModelProto, plan: Fp16Plan = Fp16Plan()) -> onnx.ModelProto:
    """FP16 weights and activations; the islands and every graph input and output stay FP32."""
    islands = sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | set(plan.islands))
    converted = OnnxModel(float16.convert_float_to_float16(model, max_finite_val=plan.max_finite, keep_io_types=True,
                                                           op_block_list=islands))
    converted.topological_sort()  # the converter appends its input Casts last; ONNX (and TensorRT) want order
    return converted.model


def write_fp16(source: Path, target: Path, plan: Fp16Plan = Fp16Plan()) -> None:
    write_checked(to_fp16(onnx.load(str(source)), plan), target)


def write_checked(model: onnx.ModelProto, target: Path) -> None:
    """`model` through onnx's checker, then written to `target` atomically."""
    onnx.checker.check_model(model)
    write_atomically(target, lambda tmp: onnx.save(model, str(tmp)))


def to_bf16(model: onnx.ModelProto, plan: Fp16Plan = Fp16Plan()) -> onnx.ModelProto:
    """BF16 weights and activations where `to_fp16` puts FP16, the same islands FP32; every weight
    rounded to BF16 (nearest even) from its FP32 original, so nothing is rounded twice or clamped to
    FP16's range (only to BF16's, `BF16_MAX`). Graph inputs and outputs stay FP32."""
    originals = {init.name: onnx.numpy_helper.to_array(init) for init in model.graph.initializer}
    converted = to_fp16(model, plan)
    for init in converted.graph.initializer:
        if init.data_type == onnx.TensorProto.FLOAT16:
            init.CopyFrom(_bf16_tensor(originals[init.name], init.name))
    for value in [*converted.graph.value_info, *converted.graph.input, *converted.graph.output]:
        if value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16:
            value.type.tensor_type.elem_type = onnx.TensorProto.BFLOAT16
    for node in converted.graph.node:
        for attribute in node.attribute:
            if node.op_type == "Cast" and attribute.name == "to" and attribute.i == onnx.TensorProto.FLOAT16:
                attribute.i = onnx.TensorProto.BFLOAT16
            elif attribute.type == onnx.AttributeProto.TENSOR and attribute.t.data_type == onnx.TensorProto.FLOAT16:
                # a constant inside a node (ConstantOfShape's value): no FP32 original by name, so from FP16
                value = onnx.numpy_helper.to_array(attribute.t).astype(np.float32)
                attribute.t.CopyFrom(_bf16_tensor(value, attribute.t.name))
    return converted


BF16_MAX = float(ml_dtypes.finfo(ml_dtypes.bfloat16).max)
"""3.39e38: FP32's extremes (attention masks' finfo.min) would round to infinity, so they are clamped here."""


def _bf16_tensor(value: np.ndarray, name: str) -> onnx.TensorProto:
    clamped = np.clip(np.asarray(value, dtype=np.float32), -BF16_MAX, BF16_MAX)
    return onnx.numpy_helper.from_array(clamped.astype(ml_dtypes.bfloat16), name)


def write_bf16(source: Path, target: Path, plan: Fp16Plan = Fp16Plan()) -> None:
    write_checked(to_bf16(onnx.load(str(source)), plan), target)


def _one_shape(feeds: list[Feeds]) -> list[Feeds]:
    """The calls of the most frequent input shapes (first seen wins a tie): onnxruntime's histogram
    calibrators stack every call's activations into one array, so shapes that vary with the
    symbolic dims (prompt tokens, objects) cannot be mixed; MinMax reduces per call and takes all."""
    shapes = [tuple(sorted((name, array.shape) for name, array in call.items())) for call in feeds]
    common = max(dict.fromkeys(shapes), key=shapes.count)
    return [call for call, shape in zip(feeds, shapes) if shape == common]


def quantizable(source: Path, plan: Int8Plan = Int8Plan()) -> bool:
    """Whether the graph has a node the plan quantizes (a graph without one stays FP32): a weight
    node, or with `plan.activation_matmuls` any node of its op types."""
    if not plan.activation_matmuls:
        return bool(weight_nodes(source, plan))
    ops = _node_types(plan)
    return any(node.op_type in ops for node in onnx.load(str(source), load_external_data=False).graph.node)


def _node_types(plan: Int8Plan) -> set[str]:
    """The graph's op types the plan's quantizer turns into INT8 kernels (dynamic: Gemm as MatMul)."""
    return set(plan.quantized_ops) | ({"Gemm"} if plan.scheme == "dynamic" else set())


def weight_nodes(source: Path, plan: Int8Plan = Int8Plan()) -> list[str]:
    """Names of the nodes the plan quantizes that hold a weight (an initializer input), in graph
    order: the candidates of node sensitivity (precision/node_sensitivity.py). The dynamic scheme's
    quantizer turns Gemm into MatMul first, so Gemm counts as a MatMul there."""
    graph = onnx.load(str(source), load_external_data=False).graph
    weights = {init.name for init in graph.initializer}
    ops = _node_types(plan)
    return [node.name for node in graph.node if node.op_type in ops and any(i in weights for i in node.input)]


def _quantizer_names(source: Path, names: tuple[str, ...], plan: Int8Plan) -> list[str]:
    """`names` as onnxruntime's quantizer sees them: its dynamic scheme rewrites a Gemm node N into
    a MatMul named `N_MatMul` (plus an Add) before it selects nodes (onnx_model.replace_gemm_with_matmul)."""
    if plan.scheme != "dynamic":
        return list(names)
    gemms = {node.name for node in onnx.load(str(source), load_external_data=False).graph.node if node.op_type == "Gemm"}
    return [f"{name}_MatMul" if name in gemms else name for name in names]


def _node_selection(source: Path, plan: Int8Plan) -> dict[str, list[str] | None]:
    """The quantizers' nodes_to_quantize / nodes_to_exclude for `plan`. Without
    `plan.activation_matmuls` the calibrated schemes quantize the weight nodes alone (the dynamic
    scheme's quantizer leaves activation MatMuls by its own option, MatMulConstBOnly)."""
    chosen = plan.only_nodes
    if chosen is None and plan.scheme != "dynamic" and not plan.activation_matmuls:
        chosen = tuple(weight_nodes(source, plan))
    only = None if chosen is None else _quantizer_names(source, chosen, plan)
    return {"nodes_to_quantize": only, "nodes_to_exclude": _quantizer_names(source, plan.excluded_nodes, plan)}


def write_int8_dynamic(source: Path, target: Path, plan: Int8Plan = Int8Plan(scheme="dynamic")) -> None:
    """Dynamic quantization of `plan.quantized_ops`: s8 weights (per channel), u8 activations whose
    scale and zero point each call computes from the tensor (no calibration feeds); with
    `plan.activation_matmuls` also MatMuls whose both inputs are activations (onnxruntime's
    `MatMulConstBOnly` off: both sides quantized per call). `plan.excluded_nodes` stay FP32."""
    _write_quantized(target, lambda staged: quantize_dynamic(
        str(source), str(staged), op_types_to_quantize=list(plan.quantized_ops), per_channel=plan.per_channel,
        weight_type=QuantType.QInt8, extra_options={"MatMulConstBOnly": not plan.activation_matmuls},
        **_node_selection(source, plan),
    ))


def _write_quantized(target: Path, quantize: Callable[[Path], None]) -> None:
    """`quantize(staged)` writes the graph into a scratch folder (onnxruntime's quantizers write
    side files beside it); only the finished graph reaches `target`, atomically."""
    with tempfile.TemporaryDirectory(prefix="mqc-int8-") as scratch:
        staged = Path(scratch) / target.name
        quantize(staged)
        model = onnx.load(str(staged))
    write_atomically(target, lambda tmp: onnx.save(model, str(tmp)))


def write_int8(source: Path, target: Path, feeds: list[Feeds], plan: Int8Plan = Int8Plan()) -> None:
    """Static QDQ quantization, the scales from `feeds` (a stage's inputs recorded from the FP32
    pipeline): onnxruntime's quantizer (u8 activations per tensor, s8 weights per channel), or with
    `plan.scheme == "modelopt"` NVIDIA ModelOpt's (s8 activations per tensor, s8 weights per channel).

    Raises:
        ConfigError: unknown calibration method (one ModelOpt lacks is refused by `Int8Plan`); no feeds;
            ModelOpt not installed.
    """
    if plan.method not in CALIBRATION_METHODS:
        raise ConfigError(f"calibration method: expected one of {sorted(CALIBRATION_METHODS)}, got {plan.method!r}")
    if not feeds:
        raise ConfigError(f"{source}: no calibration feeds for this stage (it never ran on the calibration clips)")
    if plan.method != "minmax":
        feeds = _one_shape(feeds)
    if plan.scheme == "modelopt":
        _write_modelopt(source, target, feeds, plan)
        return
    _write_quantized(target, lambda staged: quantize_static(
        str(source), str(staged), StageFeedReader(feeds), quant_format=QuantFormat.QDQ,
        op_types_to_quantize=list(plan.op_types), per_channel=plan.per_channel,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        calibrate_method=CALIBRATION_METHODS[plan.method], **_node_selection(source, plan),
    ))


def _write_modelopt(source: Path, target: Path, feeds: list[Feeds], plan: Int8Plan) -> None:
    """ModelOpt's ONNX PTQ of a copy of `source` (it writes beside the graph it reads), calibrated
    on onnxruntime's CPU provider; non-quantized ops stay FP32 (TensorRT's own FP16 choice is not
    made here: the FP16 plan is `--precision fp16`)."""
    quantize = _modelopt_quantize()
    with tempfile.TemporaryDirectory(prefix="mqc-modelopt-") as scratch, _without_gpu_probe_errors():
        copy = Path(scratch) / source.name
        copy.write_bytes(source.read_bytes())
        _write_quantized(target, lambda staged: quantize(
            str(copy), quantize_mode="int8", calibration_data_reader=StageFeedReader(feeds),
            calibration_method=MODELOPT_METHODS[plan.method], calibration_eps=["cpu"], high_precision_dtype="fp32",
            op_types_to_quantize=list(plan.op_types), output_path=str(staged), log_level="WARNING",
            **_as_patterns(_node_selection(source, plan)),
        ))


def _as_patterns(selection: dict[str, list[str] | None]) -> dict[str, list[str] | None]:
    """Node names as ModelOpt's selection reads them, regular expressions matched at the name's start:
    each name escaped and anchored at its end, so `node_MatMul_1` no longer selects `node_MatMul_10`."""
    return {key: None if names is None else [re.escape(name) + "$" for name in names] for key, names in selection.items()}


class _GpuProbeFilter(logging.Filter):
    """Drops ModelOpt's ERROR that NVML is missing: it probes for GPUs before every CPU calibration."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Failed to get GPU count")


@contextlib.contextmanager
def _without_gpu_probe_errors() -> Iterator[None]:
    logger, quiet = logging.getLogger("modelopt.onnx"), _GpuProbeFilter()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


def _modelopt_quantize() -> Callable[..., None]:
    """`modelopt.onnx.quantization.quantize`, or a ConfigError that says how to install it."""
    try:
        from modelopt.onnx.quantization import quantize
    except ImportError as error:
        raise ConfigError(f"INT8 scheme modelopt: NVIDIA ModelOpt's ONNX quantizer is not installed ({error}); "
                          f"{MODELOPT_INSTALL}") from None
    return quantize


def modelopt_version() -> str:
    """The installed nvidia-modelopt's version.

    Raises:
        ConfigError: ModelOpt (or a dependency of its ONNX quantizer) is missing, with the install line.
    """
    _modelopt_quantize()
    return importlib.metadata.version("nvidia-modelopt")
