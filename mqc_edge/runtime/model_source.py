"""Where a model comes from, resolved in one place: which backend runs its stages, and the host
tokenizer for its text prompts.

The source is a checkpoint run by the torch backend, or an export directory run by
onnxruntime (or by torch from the weights it keeps), so the CLI and the Python API never branch on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mqc_edge.errors import ConfigError
from mqc_edge.runtime.backends.stage_backend import StageBackend, load_backend
from mqc_edge.runtime.manifest import MANIFEST_NAME, Manifest, load_manifest
from mqc_edge.runtime.text import MissingTextEncoder, TextTokenizer
from mqc_edge.runtime.text_cache import load_text_embeddings


@dataclass(frozen=True)
class ModelSource:
    """A loaded model: its stage backend, its tokenizer (None for SAM 2.1, a `MissingTextEncoder` for
    an MQC model exported or built without its text encoder), what it is."""

    backend: StageBackend
    tokenizer: TextTokenizer | MissingTextEncoder | None
    text_cache: dict[str, dict[str, np.ndarray]] | None  # precomputed texts of an export (`--texts`)
    description: str  # one line for the user: file, kind, parts that start untrained


def load_model(
    model: Path,
    backend: str = "torch",
    model_config: str | None = None,
    image_size: int | None = None,
    device: str = "cpu",
    threads: int | None = None,
) -> ModelSource:
    """Load `model` (mqc-edge .safetensors, or Meta's SAM 2.1 .pt / .safetensors with
    `model_config` and `image_size`, or an `mqc-edge export` directory) on the named backend."""
    checkpoint = Path(model)
    manifest: Manifest | None = None
    if not (checkpoint / MANIFEST_NAME).is_file():
        if backend != "torch":
            raise ConfigError(
                f"backend {backend!r} runs an export directory; {checkpoint} is not one (run `mqc-edge export`)"
            )
        options = {"checkpoint": checkpoint, "model_config": model_config, "image_size": image_size, "device": device}
    elif backend == "torch":
        manifest = load_manifest(checkpoint)
        options = _torch_options(manifest, device)
    else:
        options = {"export_dir": checkpoint}
    stage_backend = load_backend(backend, threads=threads, **options)
    tokenizer = _tokenizer(stage_backend, checkpoint)
    # Graph backends verify the manifest themselves (it re-hashes every file): read it once.
    manifest = manifest or getattr(stage_backend, "manifest", None)
    texts_file = manifest.file("texts") if manifest is not None else None
    text_cache = load_text_embeddings(texts_file) if texts_file is not None else None
    return ModelSource(stage_backend, tokenizer, text_cache, getattr(stage_backend, "description", str(checkpoint)))


def _tokenizer(backend: StageBackend, source: Path) -> TextTokenizer | MissingTextEncoder | None:
    """The host tokenizer of `backend`'s text encoder, a `MissingTextEncoder` when its MQC model has
    none, None for SAM 2.1 (or a backend that names no tokenizer.json)."""
    mqc = backend.geometry.mqc
    if mqc is not None and not mqc.text_encoder:
        return MissingTextEncoder(source)
    tokenizer_file = getattr(backend, "tokenizer_file", None)
    return TextTokenizer(tokenizer_file, mqc.text_tokens) if mqc is not None and tokenizer_file else None


def _torch_options(manifest: Manifest, device: str) -> dict[str, object]:
    """An export directory gives its source weights to torch, so `--backend torch` on it is the
    reference the graphs were checked against."""
    return {
        "checkpoint": manifest.file("weights"),
        "variant": manifest.content["model"]["sam2_variant"],
        "image_size": manifest.geometry.image_size,
        "device": device,
        "memory_storage": manifest.memory_storage,
    }
