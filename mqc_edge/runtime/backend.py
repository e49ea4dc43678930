"""The stage backend protocol: what the Tracker needs from torch, onnxruntime or TensorRT.

A backend only executes contract stages (DESIGN section 3). Tensors live inside it as
opaque handles (a torch tensor, an OrtValue, a device buffer); the Tracker moves only small
arrays across with `to_host` / `from_host`. Backends are found by name and imported lazily,
so importing the runtime never imports torch.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol

import numpy as np

from mqc_edge.contract import ModelGeometry, TensorSpec
from mqc_edge.errors import ConfigError

Handle = Any
"""A backend-owned tensor; only its backend can read it."""

BACKEND_MODULES = {
    "torch": "mqc_edge.model.torch_backend",
    "onnxruntime": "mqc_edge.runtime.ort_backend",
    "onnxruntime-cuda": "mqc_edge.runtime.ort_backend:load_cuda",
    "onnxruntime-trt": "mqc_edge.runtime.ort_backend:load_tensorrt",
    "tensorrt": "mqc_edge.runtime.trt_backend",
}
"""Backend name -> "module" with a `load(**options) -> StageBackend` function, or "module:function"."""


class StageBackend(Protocol):
    """Executes stages on handles. Calls are synchronous: a handle returned by `run` is
    ready when `to_host` reads it."""

    geometry: ModelGeometry

    def run(self, stage: str, inputs: dict[str, Handle]) -> dict[str, Handle]:
        """Run one contract stage; inputs and outputs are keyed by contract tensor names."""
        ...

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


def slot_index(buffer_ndim: int, value_ndim: int, index: int) -> tuple[int, ...]:
    """`write_slot`'s index into a buffer of slots shaped like value[0]: zeros for the buffer's
    extra leading axes (a SAM 2 bank's batch of one), then the slot."""
    return (0,) * (buffer_ndim - value_ndim) + (index,)


def load_backend(name: str, **options: Any) -> StageBackend:
    """Import the backend module named `name` and build a backend from `options`."""
    if name not in BACKEND_MODULES:
        raise ConfigError(f"backend: expected one of {sorted(BACKEND_MODULES)}, got {name!r}")
    module, _, function = BACKEND_MODULES[name].partition(":")
    return getattr(importlib.import_module(module), function or "load")(**options)
