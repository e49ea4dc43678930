"""The torch stage backend: the reference every other backend is compared with.

Handles are torch tensors on `device`; every stage call checks its inputs and outputs
against the contract, so a wrong wiring fails at the stage that caused it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from sam2.modeling.sam2_base import SAM2Base

from mqc_edge.contract import StageSpec, TensorSpec, stage_specs
from mqc_edge.errors import StageContractError
from mqc_edge.model.sam2_build import build_sam21, geometry_of
from mqc_edge.model.stages import build_stages


class TorchBackend:
    """Runs the stages of one SAM2Base under `torch.inference_mode`."""

    def __init__(self, model: SAM2Base, device: str = "cpu") -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.geometry = geometry_of(model)
        self.specs = stage_specs(self.geometry)
        self.stages = build_stages(self.model)

    def run(self, stage: str, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        spec = self._spec(stage)
        _check(spec, spec.inputs, inputs)
        with torch.inference_mode():
            outputs = self.stages[stage](*(inputs[t.name] for t in spec.inputs))
        if isinstance(outputs, torch.Tensor):
            outputs = (outputs,)
        named = {t.name: out for t, out in zip(spec.outputs, outputs)}
        _check(spec, spec.outputs, named)
        return named

    def to_host(self, handle: torch.Tensor) -> np.ndarray:
        return handle.detach().cpu().numpy()

    def from_host(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array)).to(self.device)

    def zeros(self, spec: TensorSpec) -> torch.Tensor:
        return torch.zeros(spec.shape, dtype=getattr(torch, spec.dtype), device=self.device)

    def write_slot(self, buffer: torch.Tensor, index: int, value: torch.Tensor) -> None:
        buffer[index].copy_(value[0])

    def _spec(self, stage: str) -> StageSpec:
        if stage not in self.specs:
            raise StageContractError(f"unknown stage {stage!r}; the contract has {sorted(self.specs)}")
        return self.specs[stage]


def _check(spec: StageSpec, tensors: tuple[TensorSpec, ...], given: dict[str, torch.Tensor]) -> None:
    missing = [t.name for t in tensors if t.name not in given]
    if missing:
        raise StageContractError(f"stage {spec.name!r}: missing tensors {missing}")
    for tensor_spec in tensors:
        tensor = given[tensor_spec.name]
        dtype = str(tensor.dtype).removeprefix("torch.")
        tensor_spec.check(spec.name, tuple(tensor.shape), dtype)


def load(
    checkpoint: Path | None = None,
    variant: str = "tiny",
    image_size: int = 1024,
    seed: int = 0,
    device: str = "cpu",
) -> TorchBackend:
    """`load_backend("torch", ...)`: a SAM 2.1 `variant` with seeded random weights or a checkpoint."""
    return TorchBackend(build_sam21(variant, image_size, seed, checkpoint), device)
