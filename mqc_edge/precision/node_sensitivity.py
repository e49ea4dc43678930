"""Per-node INT8 sensitivity inside one stage, and the smallest set of nodes to leave FP32.

A stage outside the INT8 gate on its own (the trained default's image encoder: mean IoU 0.975
in SAM 2 mode, docs/precision.md) is often broken by a few of its weight ops, not all. Each
weight node is quantized alone and scored by how far the stage's outputs move on real feeds
(recorded from the FP32 pipeline, calibration/reader.py): max over calls and float outputs of
||y_int8 - y_fp32|| / ||y_fp32||. The build then leaves the top 1, 2, 4, ... nodes of that
ranking FP32 until the stage alone passes its end-to-end gate (precision/build.py), up to half
of the nodes; a stage that needs more stays FP32.

The ranking is a local proxy: errors of nodes interact (on the default's image encoder two
nodes left FP32 did worse than one, measured), so every exclusion is judged by the gate, never
by the proxy.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime

from mqc_edge.calibration.reader import Feeds
from mqc_edge.errors import ConfigError
from mqc_edge.precision.plans import Int8Plan, weight_nodes, write_int8, write_int8_dynamic
from mqc_edge.runtime.backends.ort_backend import session_options

MAX_EXCLUDED_FRACTION = 0.5
"""At most this share of a stage's weight nodes is left FP32; a stage that needs more stays FP32."""


@dataclass(frozen=True)
class NodeSensitivity:
    """One weight node quantized alone."""

    node: str  # node name in the source graph
    parameter: str  # the module its weights come from (e.g. model.image_encoder.trunk.blocks.0.block.attn.qkv)
    relative_error: float  # max over calls and float outputs of ||y_int8 - y_fp32|| / ||y_fp32||


def rank_nodes(source: Path, feeds: list[Feeds], plan: Int8Plan, threads: int = 1) -> list[NodeSensitivity]:
    """Every weight node of `source` (precision.weight_nodes) quantized alone under `plan`, most
    sensitive first (ties in graph order). Raises ConfigError without feeds."""
    if not feeds:
        raise ConfigError(f"{source}: no recorded feeds to rank its nodes on (the stage never ran on the calibration clips)")
    reference = _run(source, feeds, threads)
    parameters = parameters_of(source)
    ranking = []
    with tempfile.TemporaryDirectory(prefix="mqc-nodes-") as scratch:
        trial = Path(scratch) / source.name
        for node in weight_nodes(source, plan):
            write_quantized(source, trial, feeds, dataclasses.replace(plan, only_nodes=(node,), excluded_nodes=()))
            ranking.append(NodeSensitivity(node, parameters.get(node, node),
                                           output_error(reference, _run(trial, feeds, threads))))
    return sorted(ranking, key=lambda item: -item.relative_error)


def parameters_of(source: Path) -> dict[str, str]:
    """{node name: the module path of its weights} (the exporter names nodes `val_22`; named
    initializers keep the torch parameter's path). The path comes from the node's first named
    input, or, where the exporter folded the weight into an unnamed constant (a transposed
    `nn.Linear` weight), from the named bias of the Add that alone consumes the node's output."""
    graph = onnx.load(str(source), load_external_data=False).graph
    named = {init.name for init in graph.initializer if "." in init.name}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def own_or_bias(node: onnx.NodeProto) -> str | None:
        own = next((i for i in node.input if i in named), None)
        after = consumers.get(node.output[0], []) if node.output else []
        if own is None and len(after) == 1 and after[0].op_type == "Add":
            own = next((i for i in after[0].input if i in named), None)
        return own

    return {node.name: name.rsplit(".", 1)[0] for node in graph.node for name in [own_or_bias(node)] if name}


def write_quantized(source: Path, target: Path, feeds: list[Feeds], plan: Int8Plan) -> None:
    """`source` to INT8 under `plan` at `target`: static or modelopt (scales from `feeds`), or dynamic."""
    if plan.scheme == "dynamic":
        write_int8_dynamic(source, target, plan)
    else:
        write_int8(source, target, feeds, plan)


def output_error(reference: list[list[np.ndarray]], outputs: list[list[np.ndarray]]) -> float:
    """Max over calls and floating outputs of the relative L2 error ||y - y_ref|| / ||y_ref||
    (an all-zero reference output is skipped)."""
    errors = [float(np.linalg.norm(got - ref) / np.linalg.norm(ref))
              for ref_call, got_call in zip(reference, outputs, strict=True)
              for ref, got in zip(ref_call, got_call, strict=True)
              if ref.dtype.kind == "f" and np.any(ref)]
    return max(errors, default=0.0)


def exclusion_sizes(node_count: int, max_fraction: float = MAX_EXCLUDED_FRACTION) -> list[int]:
    """How many of the ranked nodes to leave FP32, tried in order: 1, 2, 4, ... up to
    `max_fraction` of `node_count` (that bound itself tried last)."""
    limit = int(node_count * max_fraction)
    sizes = [1 << power for power in range(limit.bit_length()) if 1 << power <= limit]
    return sizes + ([limit] if limit and sizes[-1] != limit else [])


def smallest_passing_exclusion(ranking: list[NodeSensitivity],
                               passes: Callable[[tuple[str, ...]], bool]) -> tuple[str, ...] | None:
    """The first prefix of `ranking`, in `exclusion_sizes` order, for which `passes(excluded)` is
    true; None when none does."""
    for size in exclusion_sizes(len(ranking)):
        excluded = tuple(item.node for item in ranking[:size])
        if passes(excluded):
            return excluded
    return None


def _run(graph: Path, feeds: list[Feeds], threads: int) -> list[list[np.ndarray]]:
    session = onnxruntime.InferenceSession(str(graph), session_options(threads), providers=["CPUExecutionProvider"])
    return [session.run(None, call) for call in feeds]
