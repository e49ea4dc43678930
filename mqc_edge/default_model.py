"""The shipped default MQC-SAM: its weights inside the package, its export cached per user.

`mqc-edge run/export/bench/eval` accept `default` as MODEL. The export of the shipped weights
is made once into the cache folder and reused while it is current: its manifest verifies (every
file re-hashed) and it was made from the very weights file installed now (SHA-256 recorded
beside it), by this mqc-edge version and the very code that writes the graphs (one SHA-256 over
the sources of `model/`, `kernels/` and `export/`, so an exact rewrite that makes the graphs faster
reaches a cached export without a version bump), with float32 memory slots (`DEFAULT_MEMORY_STORAGE`).
Anything else rebuilds it. Building needs the torch side (`export` extra); an on-board install
copies a built export instead.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from mqc_edge.errors import CheckpointError, ManifestMismatchError, MqcEdgeError

DEFAULT_MODEL = "default"
DEFAULT_WEIGHTS = Path(__file__).parent / "model" / "weights" / "mqc_sam_default.safetensors"
"""Shipped weights (fp16 storage, docs/model_card.md)."""
SOURCE_RECORD = "default_source.json"
"""Beside the cached export: which weights file (SHA-256), mqc-edge version and exporter code made it."""
DEFAULT_MEMORY_STORAGE = "float32"
"""How the default's export stores memory slots (`contract.MEMORY_STORAGE`): unrounded, so the export
equals its torch reference on every frame (test split, 1,376 frames per mode: mask IoU 1.0 on all,
logits within 1.3e-4 of each frame's max |logit|; with bfloat16, 10 frames under IoU 0.999), at the
same accuracy as the bfloat16 it was trained with (J&F -0.0003 +- 0.0003 per video over 108
selection videos; docs/model_card.md 'Export parity')."""
DEFAULT_FP16_STAGES = ("image_encoder", "prompt_encoder", "no_memory", "memory_encoder", "prompt_fusion",
                       "quality_head", "uncertainty_head")
"""The default's FP16 plan (`mqc-edge build --precision fp16 --stages ...`): the stages that stay
within the FP16 gate on 16 gate clips one at a time; memory attention, DAMI attention, the mask
decoder and the text encoder stay FP32 (each alone outside it: min IoU 0.975, 0.973 and 0.939).
Within the gate on 4 and on 16 clips (docs/precision.md, "FP16 on 16 gate clips")."""
EXPORTER_PACKAGES = ("model", "kernels", "export")
"""mqc_edge's subpackages whose code shapes the exported graphs."""


def cache_root(environ: Mapping[str, str]) -> Path:
    """`$MQC_EDGE_CACHE`, else `$XDG_CACHE_HOME/mqc-edge`, else `~/.cache/mqc-edge` (read by the CLI)."""
    if environ.get("MQC_EDGE_CACHE"):
        return Path(environ["MQC_EDGE_CACHE"])
    base = Path(environ["XDG_CACHE_HOME"]) if environ.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "mqc-edge"


def resolve_model(model: str | Path | None, cache: Path, log: Callable[[str], None] = print) -> Path:
    """MODEL as the CLI takes it: `default` or None -> the cached default export, else the path."""
    if model is None or str(model) == DEFAULT_MODEL:
        return default_export(cache, log=log)
    return Path(model)


def default_export(cache: Path, weights: Path = DEFAULT_WEIGHTS, log: Callable[[str], None] = print) -> Path:
    """The export directory of `weights` under `cache`, built when missing or stale."""
    weights = Path(weights)
    if not weights.is_file():
        raise CheckpointError(f"default model: weights file {weights} is not installed (reinstall mqc-edge)")
    target = Path(cache) / DEFAULT_MODEL
    record = _source_record(weights)
    if _is_current(target, record):
        return target
    log(f"exporting the default model to {target} (once per weights file; about a minute)")
    return _build(target, weights, record)


def _source_record(weights: Path) -> dict[str, str]:
    from mqc_edge import __version__
    from mqc_edge.runtime.manifest import sha256_of

    return {"weights_sha256": sha256_of(weights), "mqc_edge": __version__, "exporter_sha256": exporter_fingerprint(),
            "memory_storage": DEFAULT_MEMORY_STORAGE}


def exporter_fingerprint() -> str:
    """SHA-256 over the relative paths and bytes of every `.py` file of `EXPORTER_PACKAGES`."""
    import hashlib

    root = Path(__file__).parent
    digest = hashlib.sha256()
    for path in sorted(p for package in EXPORTER_PACKAGES for p in (root / package).rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _is_current(target: Path, record: dict[str, str]) -> bool:
    from mqc_edge.runtime.manifest import load_manifest

    path = target / SOURCE_RECORD
    if not path.is_file():
        return False
    try:
        if json.loads(path.read_text()) != record:
            return False
        manifest = load_manifest(target)
    except (json.JSONDecodeError, ManifestMismatchError):
        return False
    return bool(manifest.content.get("parity", {}).get("passed"))


def _build(target: Path, weights: Path, record: dict[str, str]) -> Path:
    from mqc_edge.export import export_model

    staging = target.with_name(f".{target.name}-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    with _exporter_quiet():
        manifest = export_model(checkpoint=weights, out=staging, memory_storage=DEFAULT_MEMORY_STORAGE)
    if not manifest["parity"]["passed"]:
        raise MqcEdgeError(f"default model: its export failed parity (report in {staging / 'manifest.json'})")
    (staging / SOURCE_RECORD).write_text(json.dumps(record, sort_keys=True) + "\n")
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging, target)
    return target


@contextlib.contextmanager
def _exporter_quiet() -> Iterator[None]:
    """The exporter's own warnings and log lines (torch.export, onnxscript's optimizer) say nothing
    a user of the default model can act on; what matters, the parity report, is checked above."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            yield
        finally:
            logging.disable(logging.NOTSET)
