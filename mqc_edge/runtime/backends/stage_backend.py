"""The stage backend: what the Tracker needs from torch, onnxruntime or TensorRT.

A backend only loads, executes contract stages and moves tensors (DESIGN section 3): a
`StageExecutor`. `CheckedBackend` puts one under the stage contract, so every backend's stage
calls are checked in one place and a wrong wiring fails at the stage that caused it. Tensors
live inside a backend as opaque handles (a torch tensor, an OrtValue, a device buffer); the
Tracker moves only small arrays across with `to_host` / `from_host`. Pre- and post-processing
(frame -> model input, low-res logits -> frame-size logits and mask) are hooks with a host default
(`HostProcessing`, numpy) that a backend may run on its device instead (the torch backend does on
CUDA, model/torch_backend.py). Backends are found by name and imported lazily, so importing the
runtime never imports torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np

from mqc_edge.contract import (OBJECTS, PROMPT_TOKENS, TRACKING_PROMPT_TOKENS, ModelGeometry, StageSpec, TensorSpec,
                               stage_specs)
from mqc_edge.errors import ConfigError, StageContractError
from mqc_edge.runtime.postprocess import upsample_logits
from mqc_edge.runtime.preprocess import preprocess_frame

Handle = Any
"""A backend-owned tensor; only its backend can read it."""

BACKEND_MODULES = {
    "torch": "mqc_edge.model.torch_backend",
    "onnxruntime": "mqc_edge.runtime.backends.ort_backend",
    "onnxruntime-cuda": "mqc_edge.runtime.backends.ort_backend:load_cuda",
    "onnxruntime-trt": "mqc_edge.runtime.backends.ort_backend:load_tensorrt",
    "tensorrt": "mqc_edge.runtime.backends.trt_backend",
}
"""Backend name -> "module" with a `load(**options) -> CheckedBackend` function, or "module:function"."""


class TensorMover(Protocol):
    """Moves handles; calls are synchronous: a handle a stage returned is ready when `to_host` reads it."""

    def to_host(self, handle: Handle) -> np.ndarray: ...

    def from_host(self, array: np.ndarray) -> Handle: ...

    def zeros(self, spec: TensorSpec) -> Handle:
        """A zero-filled tensor of a (fully static) contract spec, e.g. a memory bank."""
        ...

    def write_slot(self, buffer: Handle, index: int, value: Handle) -> None:
        """In place: slot `index` of `buffer` = value[0] (a new memory or pointer into its slot),
        where `buffer` is slots shaped like value[0] behind leading axes of size 1."""
        ...

    def concat(self, handles: list[Handle]) -> Handle:
        """Several objects' tensors as one batch along axis 0 (one handle: itself, no copy)."""
        ...

    def split(self, handle: Handle) -> list[Handle]:
        """A batch back into one handle per object, each keeping axis 0 (size 1)."""
        ...


class FrameSizeOutputs(NamedTuple):
    """What `postprocess` gives the Tracker: host arrays at frame size."""

    logits: np.ndarray  # float32 [H, W]
    mask: np.ndarray  # bool [H, W]: logits > 0
    uncertainty: np.ndarray | None  # float32 [H, W] in [0, 1]; None when no low-res map was given


class StageBackend(TensorMover, Protocol):
    """What the Tracker calls: contract stages on handles, keyed by contract tensor names, and the
    frame's pre- and post-processing (`HostProcessing` is the default of both)."""

    geometry: ModelGeometry

    def run(self, stage: str, inputs: dict[str, Handle]) -> dict[str, Handle]: ...

    def preprocess(self, frame: np.ndarray, image_size: int) -> Handle:
        """uint8 RGB [H, W, 3] on the host -> the image_encoder's `image` handle, float32 [1, 3, S, S]."""
        ...

    def postprocess(self, lowres: np.ndarray, frame_size: tuple[int, int],
                    uncertainty: np.ndarray | None = None) -> FrameSizeOutputs:
        """Hole-filled low-res logits float32 [S/4, S/4] (on the host: hole filling and the gates
        read them there) -> frame-size logits, their mask (logits > 0) and, given the low-res
        uncertainty [S/4, S/4], its frame-size map clipped to [0, 1], all on the host."""
        ...


FRAME_STEP_STAGES = ("image_encoder", "memory_attention", "mask_decoder", "memory_encoder")
"""A SAM 2 mode tracking frame's stages, in call order: what a `CapturedFrameStep` runs."""


def frame_step_inputs(geometry: ModelGeometry, objects: int) -> dict[str, TensorSpec]:
    """The tensors a frame step reads that none of its stages produces (image, banks, slot masks
    and ids, tracking prompts, flags), by contract name, resolved for `objects` objects and the
    tracking frame's prompt tokens: the static inputs of a `CapturedFrameStep`."""
    sizes = {OBJECTS: objects, PROMPT_TOKENS: TRACKING_PROMPT_TOKENS}
    specs, inputs, produced = stage_specs(geometry), {}, set()
    for name in FRAME_STEP_STAGES:
        for tensor in specs[name].inputs:
            if tensor.name not in produced:
                inputs.setdefault(tensor.name, tensor.resolved(sizes))
        produced.update(t.name for t in specs[name].outputs)
    return inputs


def check_frame_step_input(spec: TensorSpec, shape: tuple[int, ...], dtype: str) -> None:
    """StageContractError, naming the input, unless a tensor copied into a frame step's static
    input has its exact shape and dtype (a copy would broadcast a batch of one silently)."""
    if tuple(shape) != spec.shape or np.dtype(dtype) != np.dtype(spec.dtype):
        raise StageContractError(f"frame step input {spec.name!r}: expected {spec.shape} {spec.dtype}, "
                                 f"got {tuple(shape)} {dtype}")


class CapturedFrameStep(Protocol):
    """A SAM 2 mode tracking frame as one replayable unit for a fixed number of objects K (the
    torch backend's CUDA graph, model/cuda_graph.py): `FRAME_STEP_STAGES` chained, each stage
    reading what an earlier one produced. A backend that has one offers `frame_step(objects)`
    (optional: `TrackerConfig.frame_step` needs it)."""

    def replay(self, inputs: dict[str, Handle]) -> dict[str, Handle]:
        """The inputs no stage of the step produces (contract names and shapes with objects = K:
        image, memory and pointer banks with their slot masks and ids, the tracking prompts, the
        multimask and binarize flags) -> every stage's outputs by contract name (`memory` is the
        new memory). The outputs are overwritten by the next replay: copy what must outlive it."""
        ...


class HostProcessing:
    """The default pre- and post-processing of a stage backend: numpy on the host, bit-exact with
    Meta's predictor (runtime/preprocess.py, runtime/postprocess.py); the frame's model input is
    uploaded with `from_host`, and nothing is read back."""

    def preprocess(self, frame: np.ndarray, image_size: int) -> Handle:
        return self.from_host(preprocess_frame(frame, image_size))

    def postprocess(self, lowres: np.ndarray, frame_size: tuple[int, int],
                    uncertainty: np.ndarray | None = None) -> FrameSizeOutputs:
        logits = upsample_logits(lowres, *frame_size)
        if uncertainty is not None:
            uncertainty = np.clip(upsample_logits(uncertainty, *frame_size), 0.0, 1.0)
        return FrameSizeOutputs(logits, logits > 0, uncertainty)


class StageExecutor(TensorMover, Protocol):
    """What a backend implements: loaded stages that run and tensors that move, no contract checks."""

    geometry: ModelGeometry
    description: str  # one line for the user: what runs, on what
    tokenizer_file: Path | None  # tokenizer.json of the text model; None without MQC parts

    def run_stage(self, spec: StageSpec, inputs: dict[str, Handle]) -> Sequence[Handle]:
        """Run `spec`'s stage on inputs that fit it; outputs in `spec.outputs` order."""
        ...

    def describe(self, handle: Handle) -> tuple[tuple[int, ...], str]:
        """(shape, numpy dtype name) of a handle, what the contract checks."""
        ...


class CheckedBackend(HostProcessing):
    """A StageBackend: an executor's stage calls checked against the contract, inputs and outputs
    (the stage, every tensor's shape and dtype, one size per symbolic dim); moving tensors goes
    straight to the executor, pre- and post-processing runs on the host unless a subclass says
    otherwise."""

    def __init__(self, executor: StageExecutor) -> None:
        self.executor = executor
        self.geometry = executor.geometry
        self.description = executor.description
        self.tokenizer_file = executor.tokenizer_file
        self.specs = stage_specs(self.geometry)
        self.to_host, self.from_host, self.zeros = executor.to_host, executor.from_host, executor.zeros
        self.write_slot, self.concat, self.split = executor.write_slot, executor.concat, executor.split

    def run(self, stage: str, inputs: dict[str, Handle]) -> dict[str, Handle]:
        if stage not in self.specs:
            raise StageContractError(f"unknown stage {stage!r}; the contract has {sorted(self.specs)}")
        spec = self.specs[stage]
        self._check(spec, spec.inputs, inputs)
        outputs = dict(zip((t.name for t in spec.outputs), self.executor.run_stage(spec, inputs)))
        self._check(spec, spec.outputs, outputs)
        return outputs

    def _check(self, spec: StageSpec, tensors: tuple[TensorSpec, ...], handles: dict[str, Handle]) -> None:
        spec.check_tensors(tensors, {name: self.executor.describe(handle) for name, handle in handles.items()})


def slot_index(buffer_ndim: int, value_ndim: int, index: int) -> tuple[int, ...]:
    """`write_slot`'s index into a buffer of slots shaped like value[0]: zeros for the buffer's
    extra leading axes (a SAM 2 bank's batch of one), then the slot."""
    return (0,) * (buffer_ndim - value_ndim) + (index,)


def load_backend(name: str, **options: Any) -> CheckedBackend:
    """Import the backend module named `name` and build its checked backend from `options`."""
    if name not in BACKEND_MODULES:
        raise ConfigError(f"backend: expected one of {sorted(BACKEND_MODULES)}, got {name!r}")
    module, _, function = BACKEND_MODULES[name].partition(":")
    return getattr(importlib.import_module(module), function or "load")(**options)
