"""The native TensorRT stage backend: one engine per stage, cuda-python device buffers, one stream.

Loading verifies the export's manifest (runtime/manifest.py), then the engine manifest
(trt_engine.py: TensorRT version, compute capability, source ONNX hashes, precisions) before any
engine is deserialised. Handles are `DeviceTensor`s: stage outputs stay on the GPU between
stages and only `to_host` copies back (and waits). A tensor address is bound to an execution
context once per buffer (`set_tensor_address` only when the address changes) and an input
shape only when it changes; a stage is `execute_async_v3` on the stream.

CUDA graphs (`TrtExecutor.capture`): a fixed sequence of stages on static buffers (a per-frame
step with memory in fixed slots) is run once, then captured and replayed with one
`cudaGraphLaunch`; `TrtBackend.frame_step` is the Tracker's SAM 2 mode tracking frame so captured
(`TrtFrameStep`, `TrackerConfig.frame_step`). What a capture may hold: `execute_async_v3` of
stages whose input shapes and addresses are fixed, and device copies on the stream (`write_slot`,
`copy_from_host` into a static input). What it may not: allocation (`from_host`, `zeros`, `concat`, a stage's fresh outputs:
all made before capture) and anything that waits for the device (`to_host`).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mqc_edge.contract import StageSpec, TensorSpec, stage_specs
from mqc_edge.errors import ConfigError, StageContractError
from mqc_edge.runtime.backends.cuda_buffers import CudaError, DeviceMemory, DeviceTensor, check, device_info
from mqc_edge.runtime.backends.stage_backend import (FRAME_STEP_STAGES, CheckedBackend, check_frame_step_input,
                                                     frame_step_inputs, slot_index)
from mqc_edge.runtime.backends.trt_engine import (
    ENGINE_DIR, ENGINE_MANIFEST, PRECISION_FLAGS, EngineOptions, build_engines, check_engines,
)
from mqc_edge.runtime.manifest import load_manifest

REQUIRED_MODULES = {"tensorrt": "tensorrt", "cuda.bindings.runtime": "cuda-python"}
"""Module the native backend imports -> the package that installs it (extra `gpu`; cuda-python >= 12.6
ships `cuda.bindings.runtime`, DESIGN section 6)."""

FALLBACK = "--backend onnxruntime-trt runs the same graphs on TensorRT through onnxruntime"
ENGINE_POLICIES = ("check", "build-missing", "rebuild")
"""`load(engines=...)`: only use built engines; build them when absent; always rebuild."""


def missing_packages() -> list[str]:
    """Packages of REQUIRED_MODULES that this host cannot import (found without importing them)."""
    return [package for module, package in REQUIRED_MODULES.items() if not _importable(module)]


def _importable(module: str) -> bool:
    if module in sys.modules:  # imported already (or blocked with None)
        return sys.modules[module] is not None
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package (`cuda`) is absent
        return False


def import_gpu_modules(export_dir: Path) -> tuple[Any, Any]:
    """(tensorrt, cuda.bindings.runtime), or the one-line ConfigError naming what to install."""
    missing = missing_packages()
    if missing:
        raise ConfigError(
            f"backend 'tensorrt' for {export_dir}: the native TensorRT backend needs {', '.join(missing)} "
            f"(pip install 'mqc-edge[gpu]'), not installed here; {FALLBACK}"
        )
    return importlib.import_module("tensorrt"), importlib.import_module("cuda.bindings.runtime")


class TrtExecutor:
    """The engines of one export directory, their execution contexts and the device memory."""

    def __init__(self, trt: Any, cudart: Any, export_dir: Path, engine_dir: Path, engines: str,
                 options: EngineOptions) -> None:
        if engines not in ENGINE_POLICIES:
            raise ConfigError(f"engines: expected one of {ENGINE_POLICIES}, got {engines!r}")
        self.trt, self.manifest = trt, load_manifest(export_dir)
        self.manifest.require_precisions(frozenset(PRECISION_FLAGS), "TensorRT")  # int8-dynamic is onnxruntime's
        self.geometry = self.manifest.geometry
        self.tokenizer_file = self.manifest.file("tokenizer")
        self.device = device_info(cudart)
        files = _engine_files(trt, self.manifest, engine_dir, self.device, engines, options)
        self.memory = DeviceMemory(cudart)
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.specs = stage_specs(self.geometry)
        self.engines = {name: _deserialize(runtime, files[name], self.specs[name], trt) for name in self.specs}
        self.contexts = {name: engine.create_execution_context() for name, engine in self.engines.items()}
        self.inputs = {name: _engine_inputs(trt, engine) for name, engine in self.engines.items()}
        self._bound: dict[tuple[str, str], int] = {}
        self._shapes: dict[tuple[str, str], tuple[int, ...]] = {}
        self.description = (f"TensorRT {trt.__version__} on {self.device.name} (sm {self.device.compute_capability}) "
                            f"from {Path(export_dir)}")

    def run_stage(self, spec: StageSpec, inputs: dict[str, DeviceTensor]) -> list[DeviceTensor]:
        """Enqueue `spec` on the stream into fresh output tensors; nothing waits for it."""
        self._set_inputs(spec, inputs)
        outputs = [self._new_output(spec, tensor) for tensor in spec.outputs]
        self._enqueue(spec, inputs, outputs)
        return outputs

    def _set_inputs(self, spec: StageSpec, inputs: dict[str, DeviceTensor]) -> None:
        context = self.contexts[spec.name]
        for name in self.inputs[spec.name]:
            shape = inputs[name].shape
            if self._shapes.get((spec.name, name)) != shape:
                if not context.set_input_shape(name, shape):
                    raise StageContractError(f"stage {spec.name!r} tensor {name!r}: shape {list(shape)} is outside "
                                             "the engine's optimisation profile")
                self._shapes[spec.name, name] = shape

    def _new_output(self, spec: StageSpec, tensor: TensorSpec) -> DeviceTensor:
        shape = tuple(int(d) for d in self.contexts[spec.name].get_tensor_shape(tensor.name))
        return self.memory.empty(shape, tensor.dtype, prefer=self._bound.get((spec.name, tensor.name)))

    def _enqueue(self, spec: StageSpec, inputs: dict[str, DeviceTensor], outputs: Sequence[DeviceTensor]) -> None:
        for name in self.inputs[spec.name]:
            self._bind(spec.name, name, inputs[name].ptr)
        for tensor, output in zip(spec.outputs, outputs):
            self._bind(spec.name, tensor.name, output.ptr)
        if not self.contexts[spec.name].execute_async_v3(self.memory.stream_handle):
            raise CudaError(f"TensorRT execute_async_v3 of stage {spec.name!r} failed (TensorRT's log says why)")

    def _bind(self, stage: str, name: str, ptr: int) -> None:
        """`set_tensor_address` once per buffer: only when `name` is not already bound to `ptr`."""
        if self._bound.get((stage, name)) != ptr:
            if not self.contexts[stage].set_tensor_address(name, ptr):
                raise CudaError(f"TensorRT set_tensor_address({name!r}) of stage {stage!r} failed")
            self._bound[stage, name] = ptr

    def describe(self, handle: DeviceTensor) -> tuple[tuple[int, ...], str]:
        return handle.shape, handle.dtype.name

    def to_host(self, handle: DeviceTensor) -> np.ndarray:
        return self.memory.download(handle)

    def from_host(self, array: np.ndarray) -> DeviceTensor:
        return self.memory.upload(array)

    def copy_from_host(self, into: DeviceTensor, array: np.ndarray) -> None:
        """Overwrite a (static) device tensor with a host array of its shape and dtype."""
        self.memory.upload(array, into=into)

    def zeros(self, spec: TensorSpec) -> DeviceTensor:
        return self.memory.zeros(spec.shape, spec.dtype)

    def write_slot(self, buffer: DeviceTensor, index: int, value: DeviceTensor) -> None:
        """Device copy of value[0] into slot `index` (see TensorMover.write_slot)."""
        where = slot_index(buffer.ndim, value.ndim, index)
        slot_shape = buffer.shape[len(where):]
        slots = buffer.shape[len(where) - 1]
        if slot_shape != value.shape[1:] or buffer.dtype != value.dtype or not 0 <= index < slots:
            raise StageContractError(f"write_slot: slot {index} of {buffer.dtype}{list(buffer.shape)} cannot take "
                                     f"{value.dtype}{list(value.shape)}[0]")
        offset = int(np.ravel_multi_index(where + (0,) * len(slot_shape), buffer.shape)) * buffer.dtype.itemsize
        self.memory.copy(buffer.ptr + offset, value.ptr, value.nbytes // value.shape[0])

    def concat(self, handles: list[DeviceTensor]) -> DeviceTensor:
        if len(handles) == 1:
            return handles[0]
        first = handles[0]
        batch = self.memory.empty((sum(h.shape[0] for h in handles), *first.shape[1:]), first.dtype)
        offset = 0
        for handle in handles:
            self.memory.copy(batch.ptr + offset, handle.ptr, handle.nbytes)
            offset += handle.nbytes
        return batch

    def split(self, handle: DeviceTensor) -> list[DeviceTensor]:
        """Views, no copy: object i is rows [i, i+1) of the batch, which stays alive while they do."""
        row = handle.nbytes // handle.shape[0]
        return [handle.view(index * row, (1, *handle.shape[1:])) for index in range(handle.shape[0])]

    def capture(self, stages: Sequence[str], inputs: dict[str, DeviceTensor]) -> "CapturedStep":
        """A CUDA graph of `stages` run in order; see CapturedStep."""
        return CapturedStep(self, stages, inputs)

    def close(self) -> None:
        self.memory.close()


class CapturedStep:
    """Stages run in order on static buffers, captured once as a CUDA graph and replayed by `launch`.

    A stage's inputs are taken by contract name from `inputs` or from an earlier stage's outputs
    (the latest wins: image_encoder's `feat` feeds memory_attention, whose `feat_conditioned`
    feeds mask_decoder). The sequence runs once uncaptured (TensorRT's first enqueue may allocate),
    then is captured. Refresh inputs with `TrtExecutor.copy_from_host` / `write_slot` before
    `launch`; `outputs` (stage -> name -> tensor) are overwritten by every launch.
    """

    def __init__(self, executor: TrtExecutor, stages: Sequence[str], inputs: dict[str, DeviceTensor]) -> None:
        self.executor, self.cudart = executor, executor.memory.cudart
        self.inputs = dict(inputs)
        self.plan = self._warm_up(stages)
        self.graph, self.graph_exec = self._capture()

    def _warm_up(self, stages: Sequence[str]) -> list[tuple[StageSpec, dict[str, DeviceTensor], list[DeviceTensor]]]:
        tensors, plan = dict(self.inputs), []
        for name in stages:
            spec = self.executor.specs.get(name)
            if spec is None:
                raise StageContractError(f"capture: unknown stage {name!r}; the contract has "
                                         f"{sorted(self.executor.specs)}")
            feeds = {t.name: tensors[t.name] for t in spec.inputs if t.name in tensors}
            spec.check_tensors(spec.inputs, {key: (h.shape, h.dtype.name) for key, h in feeds.items()})
            outputs = self.executor.run_stage(spec, feeds)
            tensors.update((t.name, out) for t, out in zip(spec.outputs, outputs))
            plan.append((spec, feeds, outputs))
        return plan

    def _capture(self) -> tuple[Any, Any]:
        memory, cudart = self.executor.memory, self.cudart
        mode = cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        check(cudart, cudart.cudaStreamBeginCapture(memory.stream, mode), "cudaStreamBeginCapture")
        try:
            for spec, feeds, outputs in self.plan:
                self.executor._enqueue(spec, feeds, outputs)
        finally:
            graph = check(cudart, cudart.cudaStreamEndCapture(memory.stream), "cudaStreamEndCapture")
        return graph, check(cudart, cudart.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")

    @property
    def outputs(self) -> dict[str, dict[str, DeviceTensor]]:
        return {spec.name: dict(zip((t.name for t in spec.outputs), outputs)) for spec, _, outputs in self.plan}

    def launch(self) -> None:
        """Replay the captured stages on the stream (asynchronous: `to_host` waits)."""
        stream = self.executor.memory.stream
        check(self.cudart, self.cudart.cudaGraphLaunch(self.graph_exec, stream), "cudaGraphLaunch")

    def close(self) -> None:
        check(self.cudart, self.cudart.cudaGraphExecDestroy(self.graph_exec), "cudaGraphExecDestroy")
        check(self.cudart, self.cudart.cudaGraphDestroy(self.graph), "cudaGraphDestroy")


class TrtFrameStep:
    """`CapturedFrameStep` on TensorRT: `FRAME_STEP_STAGES` captured once (`CapturedStep`) for K
    objects on static device buffers shaped by the contract (objects = K, the tracking frame's
    prompt tokens). `replay` copies each input into its static buffer on the device, launches the
    graph and returns every stage's outputs by contract name (overwritten by the next replay)."""

    def __init__(self, executor: TrtExecutor, objects: int) -> None:
        self.executor = executor
        self.input_specs = frame_step_inputs(executor.geometry, objects)
        self.inputs = {name: executor.zeros(spec) for name, spec in self.input_specs.items()}
        self.step = CapturedStep(executor, FRAME_STEP_STAGES, self.inputs)

    def replay(self, inputs: dict[str, DeviceTensor]) -> dict[str, DeviceTensor]:
        """StageContractError, naming the input, when one differs from its static buffer."""
        for name, value in inputs.items():
            check_frame_step_input(self.input_specs[name], *self.executor.describe(value))
            self.executor.memory.copy(self.inputs[name].ptr, value.ptr, value.nbytes)
        self.step.launch()
        return {name: tensor for outputs in self.step.outputs.values() for name, tensor in outputs.items()}


def _engine_files(trt: Any, manifest: Any, engine_dir: Path, device: Any, engines: str,
                  options: EngineOptions) -> dict[str, Path]:
    """Checked engine files, building them first as the `engines` policy says."""
    if engines == "rebuild" or (engines == "build-missing" and not (engine_dir / ENGINE_MANIFEST).is_file()):
        build_engines(trt, manifest, engine_dir, device, options)
    return check_engines(trt, manifest, engine_dir, device)


def _deserialize(runtime: Any, file: Path, spec: StageSpec, trt: Any) -> Any:
    engine = runtime.deserialize_cuda_engine(file.read_bytes())
    if engine is None:
        raise ConfigError(f"{file}: TensorRT could not deserialise this engine (its log says why)")
    for index in range(engine.num_io_tensors):
        name = engine.get_tensor_name(index)
        expected = next((t for t in spec.inputs + spec.outputs if t.name == name), None)
        got = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
        if expected is None or got != np.dtype(expected.dtype):
            raise StageContractError(f"{file}: engine tensor {name!r} ({got}) is not a {spec.name} tensor of the "
                                     f"contract ({expected.dtype if expected else 'no such name'})")
    return engine


def _engine_inputs(trt: Any, engine: Any) -> tuple[str, ...]:
    """The engine's input names (an input the exporter folded away is not among them)."""
    names = (engine.get_tensor_name(index) for index in range(engine.num_io_tensors))
    return tuple(name for name in names if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT)


class TrtBackend(CheckedBackend):
    """The stages of one export directory on TensorRT, under the contract check; `manifest`,
    `capture` and `close` are its executor's."""

    def __init__(self, executor: TrtExecutor) -> None:
        super().__init__(executor)
        self.manifest, self.capture, self.close = executor.manifest, executor.capture, executor.close
        self._frame_steps: dict[int, TrtFrameStep] = {}

    def frame_step(self, objects: int) -> TrtFrameStep:
        """The SAM 2 mode tracking frame of `objects` objects as one CUDA graph (`TrtFrameStep`),
        captured once per object count and shared by the Trackers on this backend (a step's
        outputs are consumed before it returns)."""
        if objects not in self._frame_steps:
            self._frame_steps[objects] = TrtFrameStep(self.executor, objects)
        return self._frame_steps[objects]


def load(export_dir: Path, threads: int | None = None, engine_dir: Path | None = None, engines: str = "check",
         options: EngineOptions = EngineOptions()) -> TrtBackend:
    """`load_backend("tensorrt", export_dir=...)`. Engines come from `engine_dir` (default
    `<export_dir>/tensorrt`), built there first when `engines` is "build-missing" (none yet) or
    "rebuild". `threads` is accepted because every backend gets it (TensorRT has no CPU threads
    to set). Raises ConfigError (missing packages, no or stale engines), CudaError (no GPU)."""
    export_dir = Path(export_dir)
    trt, cudart = import_gpu_modules(export_dir)
    engine_dir = Path(engine_dir) if engine_dir is not None else export_dir / ENGINE_DIR
    return TrtBackend(TrtExecutor(trt, cudart, export_dir, engine_dir, engines, options))
