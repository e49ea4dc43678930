"""The onnxruntime stage backend: one InferenceSession per exported stage, torch-free.

On the CPU provider handles are numpy arrays and a stage call is `session.run`. On the CUDA
and TensorRT execution providers (onnxruntime-gpu) handles are device `OrtValue`s bound with
IO binding, so features and memory stay on the GPU between stages. Loading verifies the
manifest (hashes, contract signatures, onnxruntime release) first: a graph that is not the
one whose parity was proven is never run.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import onnxruntime as ort

from mqc_edge.contract import StageSpec, TensorSpec, stage_specs
from mqc_edge.errors import ConfigError, StageContractError
from mqc_edge.runtime.backend import Handle, slot_index
from mqc_edge.runtime.manifest import load_manifest

CPU = "CPUExecutionProvider"
PROVIDERS = {
    "cpu": (CPU,),
    "cuda": ("CUDAExecutionProvider", CPU),
    "tensorrt": ("TensorrtExecutionProvider", "CUDAExecutionProvider", CPU),
}
"""Provider chains by device kind; later entries run the nodes an earlier one cannot."""


class OrtBackend:
    """Runs the stages of one export directory with onnxruntime."""

    def __init__(self, export_dir: Path, device: str = "cpu", threads: int = 0, check_versions: bool = True) -> None:
        if device not in PROVIDERS:
            raise ConfigError(f"onnxruntime device: expected one of {sorted(PROVIDERS)}, got {device!r}")
        if threads < 0:
            raise ConfigError(f"threads: expected >= 0 (0 = onnxruntime's default), got {threads}")
        missing = [p for p in PROVIDERS[device] if p not in ort.get_available_providers()]
        if missing:
            raise ConfigError(
                f"onnxruntime device {device!r} needs {missing}; this onnxruntime has {ort.get_available_providers()} "
                "(install onnxruntime-gpu in place of onnxruntime)"
            )
        self.manifest = load_manifest(export_dir)
        if check_versions:
            self.manifest.require_version("onnxruntime", ort.__version__)
        self.device = device
        self.geometry = self.manifest.geometry
        self.specs = stage_specs(self.geometry)
        self.tokenizer_file = self.manifest.file("tokenizer")
        options = _session_options(threads)
        self.sessions = {
            name: ort.InferenceSession(str(self.manifest.stage_file(name)), options, providers=list(PROVIDERS[device]))
            for name in self.specs
        }
        self.description = f"onnxruntime {ort.__version__} ({device}) on {Path(export_dir)}"

    def run(self, stage: str, inputs: dict[str, Handle]) -> dict[str, Handle]:
        spec = self._spec(stage)
        spec.check_tensors(spec.inputs, _described(inputs))
        names = [t.name for t in spec.outputs]
        if self.device == "cpu":
            outputs = self.sessions[stage].run(names, {t.name: inputs[t.name] for t in spec.inputs})
        else:
            outputs = self._run_bound(stage, spec, inputs)
        named = dict(zip(names, outputs))
        spec.check_tensors(spec.outputs, _described(named))
        return named

    def _run_bound(self, stage: str, spec: StageSpec, inputs: dict[str, Handle]) -> list[Handle]:
        """IO binding: device OrtValues in, outputs allocated on the device by onnxruntime."""
        session = self.sessions[stage]
        binding = session.io_binding()
        for tensor in spec.inputs:
            binding.bind_ortvalue_input(tensor.name, inputs[tensor.name])
        for tensor in spec.outputs:
            binding.bind_output(tensor.name, "cuda", 0)
        session.run_with_iobinding(binding)
        return binding.get_outputs()

    def to_host(self, handle: Handle) -> np.ndarray:
        return handle if isinstance(handle, np.ndarray) else handle.numpy()

    def from_host(self, array: np.ndarray) -> Handle:
        array = np.ascontiguousarray(array)
        if self.device == "cpu":
            return array
        return ort.OrtValue.ortvalue_from_numpy(array, "cuda", 0)

    def zeros(self, spec: TensorSpec) -> Handle:
        return self.from_host(np.zeros(spec.shape, np.dtype(spec.dtype)))

    def write_slot(self, buffer: Handle, index: int, value: Handle) -> None:
        """CPU: in place. Device: onnxruntime's Python API cannot copy into part of an OrtValue,
        so the buffer makes a host round trip (the TensorRT backend copies on the device)."""
        value = self.to_host(value)
        if isinstance(buffer, np.ndarray):
            buffer[slot_index(buffer.ndim, value.ndim, index)] = value[0]
            return
        host = buffer.numpy()
        host[slot_index(host.ndim, value.ndim, index)] = value[0]
        buffer.update_inplace(host)

    def concat(self, handles: list[Handle]) -> Handle:
        """CPU: numpy. Device: a host round trip, as `write_slot` (onnxruntime's Python API has
        no device concatenation)."""
        if len(handles) == 1:
            return handles[0]
        return self.from_host(np.concatenate([self.to_host(handle) for handle in handles]))

    def split(self, handle: Handle) -> list[Handle]:
        host = self.to_host(handle)
        parts = [host[index:index + 1] for index in range(host.shape[0])]
        return parts if isinstance(handle, np.ndarray) else [self.from_host(part) for part in parts]

    def _spec(self, stage: str) -> StageSpec:
        if stage not in self.specs:
            raise StageContractError(f"unknown stage {stage!r}; the export has {sorted(self.specs)}")
        return self.specs[stage]


def _session_options(threads: int) -> ort.SessionOptions:
    """Stages run one after another, so parallelism is inside an operator only.

    Spinning is off: every session owns a thread pool, and a pool that busy-waits after its
    stage returns takes the cores from the next stage's pool and from the host code between
    stages. Measured on 2 cores at 256 px: 266 -> 165 ms/frame, the image encoder 158 -> 111 ms
    (docs/benchmarks.md).
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


def _described(handles: dict[str, Handle]) -> dict[str, tuple[tuple[int, ...], str]]:
    """(shape, numpy dtype name) of numpy arrays and OrtValues alike."""
    return {
        name: (handle.shape, str(handle.dtype)) if isinstance(handle, np.ndarray)
        else (tuple(handle.shape()), _ORT_TYPES.get(handle.data_type(), handle.data_type()))
        for name, handle in handles.items()
    }


_ORT_TYPES = {"tensor(float)": "float32", "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(bool)": "bool"}
"""OrtValue element type names -> numpy dtype names (the contract's dtypes)."""


def load(export_dir: Path, device: str = "cpu", threads: int | None = None, check_versions: bool = True) -> OrtBackend:
    """`load_backend("onnxruntime", export_dir=...)`; "onnxruntime-cuda" and "onnxruntime-trt"
    are this with the device fixed (`load_cuda`, `load_tensorrt`)."""
    return OrtBackend(Path(export_dir), device, threads or 0, check_versions)


load_cuda = partial(load, device="cuda")
load_tensorrt = partial(load, device="tensorrt")
