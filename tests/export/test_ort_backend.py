"""The onnxruntime backend: loads only a verified export, runs with the configured sessions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from mqc_edge.contract import OBJECTS
from mqc_edge.errors import ConfigError, ManifestMismatchError, StageContractError
from mqc_edge.export.inputs import random_inputs
from mqc_edge.runtime.backends.stage_backend import load_backend
from mqc_edge.runtime.manifest import MANIFEST_NAME
from mqc_edge.runtime.backends.ort_backend import OrtBackend


def _copy_of(exported: tuple, tmp_path: Path) -> Path:
    """A copy of the export whose big files are links; the small ones are real copies."""
    out = exported[0]
    for file in out.iterdir():
        target = tmp_path / file.name
        if file.stat().st_size < 200_000:
            shutil.copyfile(file, target)
        else:
            target.symlink_to(file)
    return tmp_path


def test_a_changed_graph_is_refused_by_name(exported, tmp_path: Path) -> None:
    copy = _copy_of(exported, tmp_path)
    with open(copy / "no_memory.onnx", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ManifestMismatchError, match=r"no_memory\.onnx: SHA-256 expected [0-9a-f]{64}, got"):
        OrtBackend(copy)


def test_another_onnxruntime_release_is_refused_unless_accepted(exported, tmp_path: Path) -> None:
    copy = _copy_of(exported, tmp_path)
    manifest = json.loads((copy / MANIFEST_NAME).read_text())
    manifest["versions"]["onnxruntime"] = "1.0.0"
    (copy / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(ManifestMismatchError, match=f"onnxruntime 1.0.0, installed is {ort.__version__}"):
        OrtBackend(copy)
    assert OrtBackend(copy, check_versions=False).sessions


def test_a_signature_that_differs_from_the_contract_is_refused(exported, tmp_path: Path) -> None:
    copy = _copy_of(exported, tmp_path)
    manifest = json.loads((copy / MANIFEST_NAME).read_text())
    manifest["stages"]["memory_encoder"]["inputs"][0]["shape"] = [1, 256, 16, 16]
    (copy / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(ManifestMismatchError, match="stage 'memory_encoder' signature"):
        OrtBackend(copy)


def test_a_precision_onnxruntime_cannot_run_is_refused_by_stage_and_name(exported, tmp_path: Path) -> None:
    copy = _copy_of(exported, tmp_path)
    manifest = json.loads((copy / MANIFEST_NAME).read_text())
    manifest["stages"]["mask_decoder"]["precision"] = "bf16"
    manifest["stages"]["image_encoder"]["precision"] = "int8"  # runnable: not named
    (copy / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match=r"onnxruntime \(cpu\) cannot run stages \{'mask_decoder': 'bf16'\}; "
                                          r"it runs \['fp16', 'fp32', 'int8', 'int8-dynamic'\]"):
        OrtBackend(copy)


def test_sessions_use_the_configured_threads_sequentially_fully_optimised_without_spinning(exported) -> None:
    backend = load_backend("onnxruntime", export_dir=exported[0], threads=2)
    assert set(backend.sessions) == set(backend.specs)
    for session in backend.sessions.values():
        options = session.get_session_options()
        assert options.intra_op_num_threads == 2
        assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
        assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        assert session.get_providers() == ["CPUExecutionProvider"]
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_wrong_input_names_stage_and_tensor(backends) -> None:
    inputs = random_inputs(backends[1].specs["memory_encoder"], seed=0)
    inputs["binarize"] = inputs["binarize"].astype(np.int64)
    expected = r"'memory_encoder' tensor 'binarize': expected bool\[1\], got int64\[1\]"
    with pytest.raises(StageContractError, match=expected):
        backends[1].run("memory_encoder", inputs)


def test_write_slot_writes_one_slot_in_place(backends) -> None:
    backend = backends[1]
    buffer = backend.zeros(backend.specs["memory_attention"].input("memory").resolved({OBJECTS: 1}))
    backend.write_slot(buffer, 3, np.ones((1, *buffer.shape[2:]), np.float32))
    assert buffer[0, 3].min() == 1 and np.count_nonzero(buffer) == buffer[0, 3].size


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="CUDA provider present here")
def test_cuda_backend_without_the_provider_says_what_to_install(exported) -> None:
    with pytest.raises(ConfigError, match=r"'cuda' needs \['CUDAExecutionProvider'\].*install onnxruntime-gpu"):
        load_backend("onnxruntime-cuda", export_dir=exported[0])


@pytest.mark.gpu
@pytest.mark.skipif("CUDAExecutionProvider" not in ort.get_available_providers(),
                    reason="onnxruntime here lacks CUDAExecutionProvider (onnxruntime-gpu not installed)")
def test_cuda_backend_with_io_binding_matches_cpu(exported, backends) -> None:
    cuda = load_backend("onnxruntime-cuda", export_dir=exported[0])
    cpu = backends[1]
    for stage, spec in cpu.specs.items():
        inputs = random_inputs(spec, seed=11)
        want = cpu.run(stage, inputs)
        got = cuda.run(stage, {name: cuda.from_host(array) for name, array in inputs.items()})
        for name, array in want.items():
            assert np.allclose(cuda.to_host(got[name]), array, rtol=1e-3, atol=1e-4), (stage, name)
