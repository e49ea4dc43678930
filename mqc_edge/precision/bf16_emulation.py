"""A BF16 stage graph run as FP32 arithmetic on BF16-rounded tensors, so its gate runs on a CPU.

onnxruntime's CPU provider has no BF16 MatMul, Add or Mul kernel (1.32, measured; the
onnxruntime backend refuses a BF16 stage by name), yet a BF16 build must pass its accuracy gate
before it is written. The emulation keeps the BF16 graph's every node and rounds to BF16 every
tensor the BF16 graph stores in BF16 (weights, and each BF16 node output through a
Cast(BF16) -> Cast(FLOAT) pair), computing each node in FP32. That is the arithmetic of a GPU
BF16 kernel up to its internal order of operations: MatMul and Conv accumulate in FP32 and round
their output, element-wise ops round each result (a product or sum of two BF16 values in FP32,
then BF16, differs from a direct BF16 rounding only in a double-rounding tie). The islands the
converter left in FP32 stay FP32. tests/export/test_precision.py checks it against
`onnx.reference` running the BF16 graph itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from mqc_edge.errors import ConfigError
from mqc_edge.precision.plans import write_checked

ROUNDED_SUFFIX = "__bf16"  # the BF16 copy of a node output the emulation rounds
UNROUNDED_SUFFIX = "__fp32"  # the node's own FP32 output, before rounding


def emulate_bf16(model: onnx.ModelProto) -> onnx.ModelProto:
    """The FP32 graph that computes what `model` (a BF16 graph with FP32 inputs and outputs)
    computes, every BF16 tensor rounded where the BF16 graph holds it. Raises ConfigError
    for a node output whose type shape inference cannot tell, or for a subgraph."""
    types = _element_types(model)
    emulated = onnx.ModelProto()
    emulated.CopyFrom(model)
    graph = emulated.graph
    for init in graph.initializer:
        if init.data_type == TensorProto.BFLOAT16:
            init.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(init).astype(np.float32), init.name))
    nodes = []
    for node in graph.node:
        nodes.extend(_emulated_node(node, types))
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]  # BF16 value types no longer hold; onnxruntime infers the FP32 ones
    return emulated


def write_bf16_emulation(source: Path, target: Path) -> None:
    """`emulate_bf16` of the graph file `source`, written to `target`."""
    write_checked(emulate_bf16(onnx.load(str(source))), target)


def _element_types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    values = [*inferred.graph.input, *inferred.graph.output, *inferred.graph.value_info]
    types = {value.name: value.type.tensor_type.elem_type for value in values}
    types.update({init.name: init.data_type for init in model.graph.initializer})
    return types


def _emulated_node(node: onnx.NodeProto, types: dict[str, int]) -> list[onnx.NodeProto]:
    """The node computing in FP32, then a Cast pair rounding each of its BF16 outputs."""
    if any(attribute.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for attribute in node.attribute):
        raise ConfigError(f"BF16 emulation: node {node.name!r} ({node.op_type}) has a subgraph, which it does not emulate")
    emulated = onnx.NodeProto()
    emulated.CopyFrom(node)
    for attribute in emulated.attribute:
        if node.op_type == "Cast" and attribute.name == "to" and attribute.i == TensorProto.BFLOAT16:
            attribute.i = TensorProto.FLOAT  # the rounding follows, as for every BF16 output
        elif attribute.type == onnx.AttributeProto.TENSOR and attribute.t.data_type == TensorProto.BFLOAT16:
            value = onnx.numpy_helper.to_array(attribute.t).astype(np.float32)
            attribute.t.CopyFrom(onnx.numpy_helper.from_array(value, attribute.t.name))
    rounding = []
    for index, name in enumerate(node.output):
        if not name:
            continue
        if name not in types or types[name] == TensorProto.UNDEFINED:
            raise ConfigError(f"BF16 emulation: the type of {name!r} (output of {node.op_type} {node.name!r}) "
                              "is unknown to shape inference")
        if types[name] != TensorProto.BFLOAT16:
            continue
        emulated.output[index] = name + UNROUNDED_SUFFIX
        rounding += [helper.make_node("Cast", [name + UNROUNDED_SUFFIX], [name + ROUNDED_SUFFIX], to=TensorProto.BFLOAT16,
                                      name=f"{name}_to_bf16"),
                     helper.make_node("Cast", [name + ROUNDED_SUFFIX], [name], to=TensorProto.FLOAT,
                                      name=f"{name}_from_bf16")]
    return [emulated, *rounding]
