"""`mqc-edge export --memory-storage float32`: the memory encoder graph keeps its slots unrounded,
the manifest says so, and the torch reference built from the export directory keeps them alike."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from mqc_edge.cli import main
from mqc_edge.export import model_export
from mqc_edge.export.inputs import random_inputs
from mqc_edge.runtime.backends.stage_backend import load_backend
from mqc_edge.runtime.manifest import load_manifest
from mqc_edge.runtime.model_source import load_model

BFLOAT16 = onnx.TensorProto.BFLOAT16


@pytest.fixture(scope="module")
def float32_export(exported, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, dict]:
    """(dir, CLI exit code, manifest) of the session export's weights with float32 memory storage.

    Only memory_encoder is traced again; the other graphs are copied from the session export (a
    stage's graph does not depend on the storage, and the export's own parity run, the float32
    torch reference against these graphs, would catch one that did)."""
    source = exported[0]
    out = tmp_path_factory.mktemp("float32_memory") / "model"
    trace = model_export.export_stage

    def trace_memory_encoder_only(module, spec, example, path: Path, opset: int) -> None:
        if spec.name == "memory_encoder":
            trace(module, spec, example, path, opset)
        else:
            shutil.copyfile(source / f"{spec.name}.onnx", path)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(model_export, "export_stage", trace_memory_encoder_only)
        code = main(["export", "--checkpoint", str(source / "weights.safetensors"), "--out", str(out),
                     "--memory-storage", "float32"])
    return out, code, json.loads((out / "manifest.json").read_text())


def _casts_to_bfloat16(path: Path) -> int:
    graph = onnx.load(str(path)).graph
    return sum(1 for node in graph.node if node.op_type == "Cast"
               and onnx.helper.get_attribute_value(node.attribute[0]) == BFLOAT16)


def test_the_manifest_records_the_storage_and_the_graph_drops_the_rounding(float32_export, exported) -> None:
    out, code, manifest = float32_export
    assert code == 0 and manifest["parity"]["passed"]
    assert manifest["model"]["memory_storage"] == "float32"
    assert exported[2]["model"]["memory_storage"] == "bfloat16"
    assert load_manifest(out).memory_storage == "float32"
    assert _casts_to_bfloat16(out / "memory_encoder.onnx") == 0
    assert _casts_to_bfloat16(exported[0] / "memory_encoder.onnx") == 1


def test_the_torch_reference_of_the_export_stores_float32_and_matches_the_graph(float32_export, exported) -> None:
    out, _, manifest = float32_export
    stage = manifest["parity"]["stages"]["memory_encoder"]
    reports = {kind: report["outputs"]["memory"] for kind, report in stage.items()}
    assert {"random", "real_first", "real_last"} <= set(reports)
    assert not any(report.get("bfloat16") for report in reports.values())  # compared as float32, unrounded
    assert all(report["max_relative"] <= 1e-5 for report in reports.values())
    assert exported[2]["parity"]["stages"]["memory_encoder"]["real_last"]["outputs"]["memory"]["bfloat16"]
    reference = load_model(out, "torch").backend
    assert reference.memory_storage == "float32"
    graph = load_backend("onnxruntime", export_dir=out, threads=1)
    inputs = random_inputs(reference.specs["memory_encoder"], seed=7)
    expected, got = (backend.to_host(backend.run("memory_encoder", {k: backend.from_host(v) for k, v in inputs.items()})
                                     ["memory"]) for backend in (reference, graph))
    assert not ((expected.view(np.uint32) & 0xFFFF) == 0).all()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 * np.abs(expected).max())
