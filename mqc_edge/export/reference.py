"""The export directory's source weights, and the torch reference built from them.

An export keeps its weights so that `--backend torch` runs the reference from the very files
the graphs came from: an MQC-SAM checkpoint in our format, or a SAM 2.1 state dict as
safetensors (sam2_build.load_weights reads both).
"""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import save_file
from sam2.modeling.sam2_base import SAM2Base

from mqc_edge.atomic import write_atomically
from mqc_edge.model.checkpoint import save_checkpoint
from mqc_edge.model.mqc_sam import MQCSAM
from mqc_edge.model.torch_backend import TorchBackend
from mqc_edge.runtime.model_source import load_model

WEIGHTS_NAME = "weights.safetensors"


def save_weights(model: SAM2Base | MQCSAM, path: Path) -> str:
    """Write the weights beside the graphs; returns the file name for the manifest."""
    if isinstance(model, MQCSAM):
        save_checkpoint(model, path)
    else:
        tensors = {key: value.detach().contiguous() for key, value in model.state_dict().items()}
        write_atomically(path, lambda tmp: save_file(tensors, str(tmp)))
    return Path(path).name


def load_reference(export_dir: Path, device: str = "cpu") -> TorchBackend:
    """The torch backend of an export directory, resolved as `mqc-edge run DIR --backend torch` does."""
    return load_model(Path(export_dir), "torch", device=device).backend
