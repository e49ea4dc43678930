"""The onnxruntime stage backend: one InferenceSession per exported stage, torch-free.

Two ways to run, chosen once at load by device: on the CPU provider handles are numpy arrays
and a stage call is `session.run` (`OrtCpu`); on the CUDA and TensorRT execution providers
(onnxruntime-gpu) handles are device `OrtValue`s bound with IO binding, so features and memory
stay on the GPU between stages (`OrtIoBinding`). Loading verifies the manifest (hashes, contract
signatures, onnxruntime release) first: a graph that is not the one whose parity was proven is
never run.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import onnxruntime as ort

from mqc_edge.contract import StageSpec, TensorSpec, stage_specs
from mqc_edge.errors import ConfigError
from mqc_edge.runtime.backends.stage_backend import CheckedBackend, Handle, slot_index
from mqc_edge.runtime.manifest import load_manifest

CPU = "CPUExecutionProvider"
PROVIDERS = {
    "cpu": (CPU,),
    "cuda": ("CUDAExecutionProvider", CPU),
    "tensorrt": ("TensorrtExecutionProvider", "CUDAExecutionProvider", CPU),
}
"""Provider chains by device kind; later entries run the nodes an earlier one cannot."""
RUNNABLE_PRECISIONS = frozenset({"fp32", "fp16", "int8", "int8-dynamic"})
"""Stage precisions of `mqc-edge build` these providers run. FP16 runs on the CPU provider as FP32
kernels between Casts where it has no FP16 kernel (docs/precision.md); no provider here has BF16
kernels for MatMul, Add or Mul (onnxruntime 1.32, measured), so a BF16 stage is refused by name."""


class OrtExecutor:
    """The sessions of one export directory; a subclass says how stages run and tensors move."""

    def __init__(self, export_dir: Path, device: str, threads: int, check_versions: bool) -> None:
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
        self.manifest.require_precisions(RUNNABLE_PRECISIONS, f"onnxruntime ({device})")
        if check_versions:
            self.manifest.require_version("onnxruntime", ort.__version__)
        self.geometry = self.manifest.geometry
        self.tokenizer_file = self.manifest.file("tokenizer")
        options = session_options(threads)
        self.sessions = {
            name: ort.InferenceSession(str(self.manifest.stage_file(name)), options, providers=list(PROVIDERS[device]))
            for name in stage_specs(self.geometry)
        }
        self.description = f"onnxruntime {ort.__version__} ({device}) on {Path(export_dir)}"

    def zeros(self, spec: TensorSpec) -> Handle:
        return self.from_host(np.zeros(spec.shape, np.dtype(spec.dtype)))

    def concat(self, handles: list[Handle]) -> Handle:
        """CPU: numpy. Device: a host round trip, as `write_slot` (onnxruntime's Python API has
        no device concatenation)."""
        if len(handles) == 1:
            return handles[0]
        return self.from_host(np.concatenate([self.to_host(handle) for handle in handles]))


class OrtCpu(OrtExecutor):
    """CPU provider: handles are numpy arrays, a stage is `session.run`."""

    def run_stage(self, spec: StageSpec, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        feeds = {t.name: inputs[t.name] for t in spec.inputs}
        return self.sessions[spec.name].run([t.name for t in spec.outputs], feeds)

    def describe(self, handle: np.ndarray) -> tuple[tuple[int, ...], str]:
        return handle.shape, str(handle.dtype)

    def to_host(self, handle: np.ndarray) -> np.ndarray:
        return handle

    def from_host(self, array: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(array)

    def write_slot(self, buffer: np.ndarray, index: int, value: np.ndarray) -> None:
        buffer[slot_index(buffer.ndim, value.ndim, index)] = value[0]

    def split(self, handle: np.ndarray) -> list[np.ndarray]:
        return [handle[index:index + 1] for index in range(handle.shape[0])]


class OrtIoBinding(OrtExecutor):
    """CUDA / TensorRT providers: handles are OrtValues on `memory` (device 0), inputs bound as
    they are and outputs allocated there by onnxruntime."""

    memory = "cuda"

    def run_stage(self, spec: StageSpec, inputs: dict[str, ort.OrtValue]) -> list[ort.OrtValue]:
        session = self.sessions[spec.name]
        binding = session.io_binding()
        for tensor in spec.inputs:
            binding.bind_ortvalue_input(tensor.name, inputs[tensor.name])
        for tensor in spec.outputs:
            binding.bind_output(tensor.name, self.memory, 0)
        session.run_with_iobinding(binding)
        return binding.get_outputs()

    def describe(self, handle: ort.OrtValue) -> tuple[tuple[int, ...], str]:
        return tuple(handle.shape()), _ORT_TYPES.get(handle.data_type(), handle.data_type())

    def to_host(self, handle: ort.OrtValue) -> np.ndarray:
        return handle.numpy()

    def from_host(self, array: np.ndarray) -> ort.OrtValue:
        return ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array), self.memory, 0)

    def write_slot(self, buffer: ort.OrtValue, index: int, value: ort.OrtValue) -> None:
        """onnxruntime's Python API cannot copy into part of an OrtValue, so the buffer makes a
        host round trip (the TensorRT backend copies on the device)."""
        host, value = buffer.numpy(), value.numpy()
        host[slot_index(host.ndim, value.ndim, index)] = value[0]
        buffer.update_inplace(host)

    def split(self, handle: ort.OrtValue) -> list[ort.OrtValue]:
        host = handle.numpy()
        return [self.from_host(host[index:index + 1]) for index in range(host.shape[0])]


_ORT_TYPES = {"tensor(float)": "float32", "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(bool)": "bool"}
"""OrtValue element type names -> numpy dtype names (the contract's dtypes)."""


class OrtBackend(CheckedBackend):
    """The stages of one export directory on onnxruntime, under the contract check; `sessions`
    (one per stage) and `manifest` are its executor's."""

    def __init__(self, export_dir: Path, device: str = "cpu", threads: int = 0, check_versions: bool = True) -> None:
        executor = (OrtCpu if device == "cpu" else OrtIoBinding)(Path(export_dir), device, threads, check_versions)
        super().__init__(executor)
        self.sessions, self.manifest = executor.sessions, executor.manifest
        # Two stages at once (encode-ahead): onnxruntime's `run` is thread-safe and CPU handles are
        # numpy arrays. The CUDA / TensorRT providers' concurrent IO binding is untested (no GPU lent).
        self.concurrent_stages = device == "cpu"


def session_options(threads: int) -> ort.SessionOptions:
    """Stages run one after another (but for encode-ahead's image encoder, runtime/encode_ahead.py),
    so parallelism is inside an operator only.

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


def load(export_dir: Path, device: str = "cpu", threads: int | None = None, check_versions: bool = True) -> OrtBackend:
    """`load_backend("onnxruntime", export_dir=...)`; "onnxruntime-cuda" and "onnxruntime-trt"
    are this with the device fixed (`load_cuda`, `load_tensorrt`)."""
    return OrtBackend(Path(export_dir), device, threads or 0, check_versions)


load_cuda = partial(load, device="cuda")
load_tensorrt = partial(load, device="tensorrt")
