"""Inputs for tracing and for stage parity: random ones from the contract, real ones recorded
from the torch reference tracking a clip."""

from __future__ import annotations

from typing import Any

import numpy as np

from mqc_edge.contract import OBJECTS, PROMPT_TOKENS, StageSpec
from mqc_edge.runtime.backends.stage_backend import Handle, StageBackend

EXAMPLE_SIZES = {PROMPT_TOKENS: 3, OBJECTS: 2}
"""Symbolic sizes while tracing and in random parity inputs: prompt_tokens a box (2 corners) +
padding, not 2; objects 2, not 1. torch.export treats sizes 0/1 (and a size equal to a static
one) as possibly specialised, and a batch of two also proves objects do not mix."""


def random_inputs(spec: StageSpec, seed: int) -> dict[str, np.ndarray]:
    """Contract-shaped inputs: floats ~ N(0, 1); integers in {0, 1}, which index every table a
    stage looks up (temporal encodings, FIFO ranks, SAM's point labels, token ids); booleans
    random with the first element of each row set, so masks never leave a softmax without a
    valid key for any object."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for tensor in spec.inputs:
        shape = tuple(EXAMPLE_SIZES.get(dim, dim) for dim in tensor.shape)
        dtype = np.dtype(tensor.dtype)
        if dtype == np.float32:
            array = rng.standard_normal(shape).astype(np.float32)
        else:
            array = rng.integers(0, 2, size=shape).astype(dtype)
            array[..., 0] = 1
        arrays[tensor.name] = array
    return arrays


class RecordingBackend:
    """A stage backend that keeps host copies of every stage call's inputs (real inputs for
    stage parity), and otherwise is the backend it wraps."""

    def __init__(self, backend: StageBackend) -> None:
        self.backend = backend
        self.geometry = backend.geometry
        self.calls: dict[str, list[dict[str, np.ndarray]]] = {}

    def run(self, stage: str, inputs: dict[str, Handle]) -> dict[str, Handle]:
        host = {name: np.array(self.backend.to_host(value)) for name, value in inputs.items()}
        self.calls.setdefault(stage, []).append(host)
        return self.backend.run(stage, inputs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)
