"""The torch stage backend: the reference every other backend is compared with.

Handles are torch tensors on `device`; every stage call checks its inputs and outputs
against the contract, so a wrong wiring fails at the stage that caused it. It serves a plain
SAM 2.1 network (SAM 2 mode stages) or an `MQCSAM` (SAM 2 mode and MQC stages).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
from sam2.modeling.sam2_base import SAM2Base

from mqc_edge.contract import StageSpec, TensorSpec, stage_specs
from mqc_edge.errors import ConfigError, StageContractError
from mqc_edge.model.mqc_sam import MQCSAM
from mqc_edge.model.sam2_build import SAM21_CONFIG_NAMES, build_sam21, geometry_of
from mqc_edge.model.stages import build_stages
from mqc_edge.runtime.backend import slot_index


class TorchBackend:
    """Runs the stages of one SAM2Base or MQCSAM under `torch.inference_mode`."""

    def __init__(self, model: SAM2Base | MQCSAM, device: str = "cpu", description: str = "") -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        sam = model.sam if isinstance(model, MQCSAM) else model
        self.stages = build_stages(sam)
        self.geometry = geometry_of(sam)
        self.tokenizer_file: Path | None = None
        """tokenizer.json of the text model, for the host tokenizer (runtime/text.py); None without MQC parts."""
        if isinstance(model, MQCSAM):
            from mqc_edge.model.mqc_stages import build_mqc_stages, mqc_geometry_of

            self.geometry = dataclasses.replace(self.geometry, mqc=mqc_geometry_of(model))
            self.stages.update(build_mqc_stages(model))
            self.tokenizer_file = model.text_encoder.model_path / "tokenizer.json"
        self.specs = stage_specs(self.geometry)
        self.description = description or f"{type(model).__name__} built in memory"

    def run(self, stage: str, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        spec = self._spec(stage)
        spec.check_tensors(spec.inputs, _described(inputs))
        with torch.inference_mode():
            outputs = self.stages[stage](*(inputs[t.name] for t in spec.inputs))
        if isinstance(outputs, torch.Tensor):
            outputs = (outputs,)
        named = {t.name: out for t, out in zip(spec.outputs, outputs)}
        spec.check_tensors(spec.outputs, _described(named))
        return named

    def to_host(self, handle: torch.Tensor) -> np.ndarray:
        return handle.detach().cpu().numpy()

    def from_host(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array)).to(self.device)

    def zeros(self, spec: TensorSpec) -> torch.Tensor:
        return torch.zeros(spec.shape, dtype=getattr(torch, spec.dtype), device=self.device)

    def write_slot(self, buffer: torch.Tensor, index: int, value: torch.Tensor) -> None:
        buffer[slot_index(buffer.dim(), value.dim(), index)].copy_(value[0])

    def concat(self, handles: list[torch.Tensor]) -> torch.Tensor:
        return handles[0] if len(handles) == 1 else torch.cat(handles)

    def split(self, handle: torch.Tensor) -> list[torch.Tensor]:
        return list(handle.split(1))

    def _spec(self, stage: str) -> StageSpec:
        if stage not in self.specs:
            raise StageContractError(f"unknown stage {stage!r}; the contract has {sorted(self.specs)}")
        return self.specs[stage]


def _described(tensors: dict[str, torch.Tensor]) -> dict[str, tuple[tuple[int, ...], str]]:
    return {name: (tuple(tensor.shape), str(tensor.dtype).removeprefix("torch.")) for name, tensor in tensors.items()}


def load(
    checkpoint: Path | None = None,
    variant: str = "tiny",
    image_size: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    model_config: str | None = None,
    threads: int | None = None,
) -> TorchBackend:
    """`load_backend("torch", ...)`: an MQC-SAM checkpoint (mqc-edge .safetensors, both modes), or
    SAM 2.1 (`model_config` / `variant` at `image_size`, default 1024) with seeded random weights
    or Meta's checkpoint (SAM 2 mode only)."""
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"threads: expected >= 1, got {threads}")
        torch.set_num_threads(threads)
    if model_config is not None:
        if model_config not in SAM21_CONFIG_NAMES:
            raise ConfigError(f"model config: expected one of {sorted(SAM21_CONFIG_NAMES)}, got {model_config!r}")
        variant = SAM21_CONFIG_NAMES[model_config]
    if checkpoint is not None and _is_mqc_checkpoint(Path(checkpoint)):
        return _load_mqc(Path(checkpoint), variant if model_config else None, image_size, device)
    model = build_sam21(variant, image_size or 1024, seed, checkpoint)
    source = f"SAM 2.1 {variant} " + (f"from {checkpoint}" if checkpoint else f"with random weights (seed {seed})")
    return TorchBackend(model, device, f"{source} at {model.image_size} px")


def _is_mqc_checkpoint(path: Path) -> bool:
    """An mqc-edge checkpoint is a .safetensors file whose metadata names our format."""
    if path.suffix != ".safetensors" or not path.is_file():
        return False
    from safetensors import SafetensorError, safe_open

    from mqc_edge.model.checkpoint import FORMAT

    try:
        with safe_open(str(path), framework="pt") as handle:
            return (handle.metadata() or {}).get("format") == FORMAT
    except SafetensorError:
        return False


def _load_mqc(path: Path, variant: str | None, image_size: int | None, device: str) -> TorchBackend:
    """An MQC-SAM checkpoint carries its config; an explicit variant or size must agree with it."""
    from mqc_edge.model.checkpoint import load_checkpoint

    model, report = load_checkpoint(path)
    asked = {"sam2_variant": variant, "image_size": image_size}
    saved = {key: getattr(model.config, key) for key in asked}
    clashes = {key: (value, saved[key]) for key, value in asked.items() if value not in (None, saved[key])}
    if clashes:
        raise ConfigError(
            f"checkpoint {path}: asked for {', '.join(f'{k}={v[0]!r}' for k, v in clashes.items())}, "
            f"but it was saved with {', '.join(f'{k}={v[1]!r}' for k, v in clashes.items())}"
        )
    return TorchBackend(model, device, str(report))
