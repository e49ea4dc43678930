"""One stage -> one ONNX file: torch.export-based exporter, onnxslim clean-up, contract checks.

Every stage goes through `torch.onnx.export(..., dynamo=True)`; the TorchScript exporter is
not used anywhere. Shapes are static except the contract's symbolic `prompt_tokens` and
`objects`, exported as named dynamic dimensions. The written graph's inputs and outputs are checked against the
contract by name, dtype and shape, so a renamed, dropped or re-shaped tensor fails here.
"""

from __future__ import annotations

from pathlib import Path

import onnx
import onnxslim
import torch
from torch import nn

from mqc_edge.atomic import write_atomically
from mqc_edge.contract import MAX_OBJECTS, OBJECTS, PROMPT_TOKENS, StageSpec, TensorSpec
from mqc_edge.errors import StageContractError

EXPORTER = "torch.onnx.export(dynamo=True) + onnxslim"
MAX_PROMPT_TOKENS = 64
"""Upper bound of the symbolic prompt_tokens dim: 2 box corners + many clicks + padding (ours)."""
_ONNX_DTYPES = {
    "float32": onnx.TensorProto.FLOAT,
    "int64": onnx.TensorProto.INT64,
    "int32": onnx.TensorProto.INT32,
    "bool": onnx.TensorProto.BOOL,
}


def export_stage(module: nn.Module, spec: StageSpec, example: dict[str, torch.Tensor], path: Path, opset: int) -> None:
    """Trace `module` on `example` (contract names), slim, check, and write `path` atomically."""
    dims = {PROMPT_TOKENS: torch.export.Dim(PROMPT_TOKENS, min=1, max=MAX_PROMPT_TOKENS),
            OBJECTS: torch.export.Dim(OBJECTS, min=1, max=MAX_OBJECTS)}
    dynamic = tuple({axis: dims[size] for axis, size in enumerate(t.shape) if isinstance(size, str)} or None
                    for t in spec.inputs)
    program = torch.onnx.export(
        module.eval(),
        tuple(example[t.name] for t in spec.inputs),
        dynamo=True,
        opset_version=opset,
        dynamic_shapes=dynamic,
        input_names=[t.name for t in spec.inputs],
        output_names=[t.name for t in spec.outputs],
        verbose=False,
    )
    model = onnxslim.slim(program.model_proto)
    check_graph_io(model, spec)
    onnx.checker.check_model(model, full_check=True)
    write_atomically(Path(path), lambda tmp: onnx.save(model, str(tmp)))


def check_graph_io(model: onnx.ModelProto, spec: StageSpec) -> None:
    """The graph's inputs and outputs are exactly the contract's, in order."""
    for kind, graph_values, tensors in (("inputs", model.graph.input, spec.inputs),
                                        ("outputs", model.graph.output, spec.outputs)):
        got = [_describe(value) for value in graph_values]
        want = [_expected(tensor) for tensor in tensors]
        if got != want:
            raise StageContractError(f"stage {spec.name!r}: exported graph {kind} {got}, contract {want}")


def _describe(value: onnx.ValueInfoProto) -> tuple[str, int, tuple[int | str, ...]]:
    tensor_type = value.type.tensor_type
    dims = tuple(d.dim_param if d.HasField("dim_param") else d.dim_value for d in tensor_type.shape.dim)
    return value.name, tensor_type.elem_type, dims


def _expected(tensor: TensorSpec) -> tuple[str, int, tuple[int | str, ...]]:
    return tensor.name, _ONNX_DTYPES[tensor.dtype], tensor.shape
