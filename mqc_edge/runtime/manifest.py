"""`manifest.json` of an export directory: what was exported, with what, and proof it still is.

The torch side writes it (export/model_export.py); every device backend reads it torch-free
before loading a graph (DESIGN section 3: the two sides meet only through files). Loading
re-hashes every listed file and re-derives every stage signature from the contract, so a
graph edited, swapped or exported against another contract is refused by name.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mqc_edge.atomic import write_text_atomically
from mqc_edge.contract import MEMORY_STORAGE_DEFAULT, MQCGeometry, ModelGeometry, StageSpec, stage_specs
from mqc_edge.errors import ConfigError, ManifestMismatchError

FORMAT = "mqc-edge-export/1"
MANIFEST_NAME = "manifest.json"


def signature(spec: StageSpec) -> dict[str, list[dict[str, Any]]]:
    """A stage's contract as JSON: ordered inputs and outputs with dtype and shape."""

    def tensors(specs: tuple) -> list[dict[str, Any]]:
        return [{"name": t.name, "dtype": t.dtype, "shape": list(t.shape)} for t in specs]

    return {"inputs": tensors(spec.inputs), "outputs": tensors(spec.outputs)}


def geometry_to_json(geometry: ModelGeometry) -> dict[str, Any]:
    return dataclasses.asdict(geometry)


def geometry_from_json(values: dict[str, Any]) -> ModelGeometry:
    mqc = values.get("mqc")
    return ModelGeometry(**{**values, "mqc": MQCGeometry(**mqc) if mqc else None})


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file's bytes. Remembered per process while the file's inode, size, mtime
    and ctime stay the same (any write changes ctime), so an export verified when `default` is
    resolved is not read again when its backend loads (0.55 s for the default's 155 MB)."""
    status = Path(path).stat()
    key = (str(Path(path).resolve()), status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


_DIGESTS: dict[tuple[str, int, int, int, int], str] = {}
"""sha256_of's memo: (resolved path, inode, size, mtime_ns, ctime_ns) -> hex digest."""


def write_manifest(root: Path, content: dict[str, Any]) -> None:
    """Write `content` plus the format tag; `content["files"]` must already list every file."""
    text = json.dumps({"format": FORMAT, **content}, indent=2, sort_keys=False)
    write_text_atomically(Path(root) / MANIFEST_NAME, text + "\n")


@dataclass(frozen=True)
class Manifest:
    """A verified manifest: files hashed, signatures equal to the contract's."""

    root: Path
    content: dict[str, Any]
    geometry: ModelGeometry

    def stage_file(self, stage: str) -> Path:
        return self.root / self.content["stages"][stage]["file"]

    def stage_precision(self, stage: str) -> str:
        """The precision `mqc-edge build` recorded for a stage (fp32, fp16, int8, ...); exports
        from before precision builds carry none and are fp32."""
        return self.content["stages"][stage].get("precision", "fp32")

    def require_precisions(self, runnable: frozenset[str], runner: str) -> None:
        """ConfigError naming every stage whose recorded precision `runner` cannot run."""
        refused = {name: self.stage_precision(name) for name in self.content["stages"]
                   if self.stage_precision(name) not in runnable}
        if refused:
            raise ConfigError(
                f"{self.root}: {runner} cannot run stages {refused}; it runs {sorted(runnable)} "
                "(build that precision for another backend, or build this one with `mqc-edge build --precision`)"
            )

    @property
    def memory_storage(self) -> str:
        """How the exported memory encoder leaves its slots: bfloat16 or float32
        (`contract.MEMORY_STORAGE`); exports from before the choice existed round to bfloat16."""
        return self.content["model"].get("memory_storage", MEMORY_STORAGE_DEFAULT)

    def file(self, key: str) -> Path | None:
        """An optional auxiliary file (`weights`, `tokenizer`, `texts`); None if not exported."""
        name = self.content.get("aux_files", {}).get(key)
        return None if name is None else self.root / name

    def require_version(self, package: str, installed: str) -> None:
        """The parity report holds for the major.minor release it was measured with."""
        recorded = self.content["versions"].get(package)
        if recorded is None or recorded.split(".")[:2] != installed.split(".")[:2]:
            raise ManifestMismatchError(
                f"{self.root / MANIFEST_NAME}: exported and checked with {package} {recorded}, "
                f"installed is {installed} (re-export, or pass check_versions=False to accept the risk)"
            )


def load_manifest(root: Path) -> Manifest:
    """Read and verify `root/manifest.json`; `ManifestMismatchError` names what does not match."""
    root = Path(root)
    path = root / MANIFEST_NAME
    if not path.is_file():
        raise ManifestMismatchError(f"{path}: no such file; expected an `mqc-edge export` directory")
    try:
        content = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ManifestMismatchError(f"{path}: not valid JSON ({error})") from None
    if content.get("format") != FORMAT:
        raise ManifestMismatchError(f"{path}: format expected {FORMAT!r}, got {content.get('format')!r}")
    _check_hashes(root, content["files"])
    geometry = geometry_from_json(content["model"]["geometry"])
    _check_signatures(path, content["stages"], stage_specs(geometry))
    return Manifest(root, content, geometry)


def _check_hashes(root: Path, files: dict[str, str]) -> None:
    for name, expected in files.items():
        file = root / name
        if not file.is_file():
            raise ManifestMismatchError(f"{file}: listed in {MANIFEST_NAME} but missing")
        got = sha256_of(file)
        if got != expected:
            raise ManifestMismatchError(f"{file}: SHA-256 expected {expected}, got {got} (file changed after export)")


def _check_signatures(path: Path, stages: dict[str, Any], specs: dict[str, StageSpec]) -> None:
    if set(stages) != set(specs):
        raise ManifestMismatchError(f"{path}: stages {sorted(stages)}, the contract has {sorted(specs)}")
    for name, spec in specs.items():
        recorded = {key: stages[name][key] for key in ("inputs", "outputs")}
        if recorded != signature(spec):
            raise ManifestMismatchError(
                f"{path}: stage {name!r} signature {recorded} differs from the contract's {signature(spec)}"
            )
