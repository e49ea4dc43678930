"""The torch stage backend: the reference every other backend is compared with.

Handles are torch tensors on `device`. `TorchExecutor` runs the stages of a plain SAM 2.1 network
(SAM 2 mode stages) or an `MQCSAM` (SAM 2 mode and MQC stages); `TorchBackend` is it under the
contract check (runtime/backends/stage_backend.py `CheckedBackend`), so a wrong wiring fails at the stage that
caused it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from sam2.modeling.sam2_base import SAM2Base

from mqc_edge.contract import StageSpec, TensorSpec
from mqc_edge.errors import ConfigError
from mqc_edge.model.mqc_sam import MQCSAM
from mqc_edge.model.sam2_build import SAM21_CONFIG_NAMES, build_sam21, geometry_of
from mqc_edge.model.stages import build_stages
from mqc_edge.runtime.backends.stage_backend import CheckedBackend, slot_index


class TorchExecutor:
    """Runs the stages of one SAM2Base or MQCSAM under `torch.inference_mode`, unchecked."""

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
        self.description = description or f"{type(model).__name__} built in memory"

    def run_stage(self, spec: StageSpec, inputs: dict[str, torch.Tensor]) -> Sequence[torch.Tensor]:
        with torch.inference_mode():
            outputs = self.stages[spec.name](*(inputs[t.name] for t in spec.inputs))
        return (outputs,) if isinstance(outputs, torch.Tensor) else outputs

    def describe(self, handle: torch.Tensor) -> tuple[tuple[int, ...], str]:
        return tuple(handle.shape), str(handle.dtype).removeprefix("torch.")

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


class TorchBackend(CheckedBackend):
    """`TorchExecutor` under the contract check; `model` and `stages` (the stage modules the
    exporter traces) are its."""

    def __init__(self, model: SAM2Base | MQCSAM, device: str = "cpu", description: str = "") -> None:
        executor = TorchExecutor(model, device, description)
        super().__init__(executor)
        self.model, self.stages = executor.model, executor.stages


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
