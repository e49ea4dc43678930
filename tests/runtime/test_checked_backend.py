"""The contract is checked once, above the backends: an executor that checks nothing, wrapped,
still refuses a wrong stage, input or output; onnxruntime's IO-binding path equals its CPU path."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from mqc_edge.contract import ModelGeometry, StageSpec, TensorSpec
from mqc_edge.errors import StageContractError
from mqc_edge.runtime.backends.stage_backend import CheckedBackend, slot_index

from suite_helpers import EXPRESSIONS

GEOMETRY = ModelGeometry(image_size=64, hidden_dim=32, mem_dim=8)


class UncheckedStub:
    """Numpy handles; every stage returns zeros of its outputs' shapes in `dtype`, and nothing is checked here."""

    def __init__(self, dtype: str | None = None) -> None:
        self.geometry, self.description, self.tokenizer_file = GEOMETRY, "stub", None
        self.dtype = dtype
        self.calls: list[str] = []

    def run_stage(self, spec: StageSpec, inputs: dict[str, np.ndarray]) -> Sequence[np.ndarray]:
        self.calls.append(spec.name)
        return [np.zeros(t.shape, self.dtype or t.dtype) for t in spec.outputs]

    def describe(self, handle: np.ndarray) -> tuple[tuple[int, ...], str]:
        return handle.shape, str(handle.dtype)

    def to_host(self, handle: np.ndarray) -> np.ndarray:
        return handle

    def from_host(self, array: np.ndarray) -> np.ndarray:
        return array

    def zeros(self, spec: TensorSpec) -> np.ndarray:
        return np.zeros(spec.shape, spec.dtype)

    def write_slot(self, buffer: np.ndarray, index: int, value: np.ndarray) -> None:
        buffer[slot_index(buffer.ndim, value.ndim, index)] = value[0]

    def concat(self, handles: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(handles)

    def split(self, handle: np.ndarray) -> list[np.ndarray]:
        return [handle[index:index + 1] for index in range(handle.shape[0])]


def _feat(size: int = GEOMETRY.feat_size) -> np.ndarray:
    return np.zeros((1, GEOMETRY.hidden_dim, size, size), np.float32)


def test_a_checked_stub_runs_a_stage_and_names_its_outputs() -> None:
    stub = UncheckedStub()
    outputs = CheckedBackend(stub).run("no_memory", {"feat": _feat()})
    assert list(outputs) == ["feat_conditioned"] and outputs["feat_conditioned"].shape == _feat().shape
    assert stub.calls == ["no_memory"]


def test_a_wrong_input_shape_is_refused_before_the_stage_runs() -> None:
    stub = UncheckedStub()
    expected = r"'no_memory' tensor 'feat': expected float32\[1, 32, 4, 4\], got float32\[1, 32, 2, 2\]"
    with pytest.raises(StageContractError, match=expected):
        CheckedBackend(stub).run("no_memory", {"feat": _feat(2)})
    assert stub.calls == []


def test_a_wrong_output_dtype_names_stage_and_tensor() -> None:
    expected = r"'no_memory' tensor 'feat_conditioned': expected float32.*got float64"
    with pytest.raises(StageContractError, match=expected):
        CheckedBackend(UncheckedStub(dtype="float64")).run("no_memory", {"feat": _feat()})


def test_an_unknown_stage_names_the_contract_s_stages() -> None:
    with pytest.raises(StageContractError, match=r"unknown stage 'decoder'; the contract has \[.*'mask_decoder'"):
        CheckedBackend(UncheckedStub()).run("decoder", {})


def test_a_missing_input_names_it() -> None:
    with pytest.raises(StageContractError, match=r"stage 'no_memory': missing tensors \['feat'\]"):
        CheckedBackend(UncheckedStub()).run("no_memory", {})


def _io_binding_on_cpu(export_dir):
    """onnxruntime's IO-binding strategy with OrtValues in host memory: the device path, testable without a GPU."""
    from mqc_edge.runtime.backends.ort_backend import OrtIoBinding

    class HostIoBinding(OrtIoBinding):
        memory = "cpu"

    return CheckedBackend(HostIoBinding(export_dir, "cpu", 1, True))


def test_io_binding_runs_every_stage_as_the_cpu_path_does(exported, backends) -> None:
    from mqc_edge.export.inputs import random_inputs

    bound, cpu = _io_binding_on_cpu(exported[0]), backends[1]
    for stage, spec in cpu.specs.items():
        inputs = random_inputs(spec, seed=11)
        want = cpu.run(stage, inputs)
        got = bound.run(stage, {name: bound.from_host(array) for name, array in inputs.items()})
        for name, array in want.items():
            np.testing.assert_array_equal(bound.to_host(got[name]), array, err_msg=f"{stage} {name}")


def test_io_binding_moves_tensors_as_the_cpu_path_does(exported) -> None:
    bound = _io_binding_on_cpu(exported[0])
    rows = np.arange(12, dtype=np.float32).reshape(3, 4)
    parts = bound.split(bound.concat([bound.from_host(rows[:1]), bound.from_host(rows[1:])]))
    assert [bound.to_host(part).tolist() for part in parts] == [[row] for row in rows.tolist()]
    buffer = bound.zeros(TensorSpec("slots", "float32", (1, 5, 4)))
    bound.write_slot(buffer, 3, bound.from_host(rows[2:]))
    host = bound.to_host(buffer)
    assert host[0, 3].tolist() == rows[2].tolist() and np.count_nonzero(host) == 4


@pytest.mark.parametrize(("mode", "prompt"), [("sam2", {"box": (20, 30, 90, 100)}), ("mqc", {"text": EXPRESSIONS[1]})])
def test_a_tracker_on_io_binding_equals_one_on_the_cpu_path(exported, backends, mode: str, prompt: dict) -> None:
    from mqc_edge.export.parity import track_clip
    from mqc_edge.runtime.config import TrackerConfig
    from mqc_edge.runtime.model_source import load_model

    tokenizer = load_model(exported[0], backend="onnxruntime", threads=1).tokenizer
    frames = [np.random.default_rng(seed).integers(0, 255, (96, 128, 3), dtype=np.uint8) for seed in range(4)]
    config = TrackerConfig(mode=mode)
    want = track_clip(backends[1], frames, config, tokenizer, **prompt)
    got = track_clip(_io_binding_on_cpu(exported[0]), frames, config, tokenizer, **prompt)
    assert len(got) == len(want) == len(frames)
    for ours, reference in zip(got, want):
        np.testing.assert_array_equal(ours.logits, reference.logits)
