"""The native TensorRT stage backend's slot: engines run through TensorRT with cuda-python buffers.

The engines themselves come with the precision issue (`mqc-edge build`: FP16 islands, INT8 Q/DQ);
until then this module names what a host lacks, so `--backend tensorrt` fails in one line that
says what to install or what to use instead. `onnxruntime-trt` (onnxruntime's TensorRT execution
provider, runtime/backends/ort_backend.py) runs the exported graphs on TensorRT today.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from mqc_edge.errors import ConfigError
from mqc_edge.runtime.backends.stage_backend import CheckedBackend

REQUIRED_MODULES = {"tensorrt": "tensorrt", "cuda.bindings.runtime": "cuda-python"}
"""Module the native backend imports -> the package that installs it (extra `gpu`; cuda-python >= 12.6
ships `cuda.bindings.runtime`, DESIGN section 6)."""

FALLBACK = "--backend onnxruntime-trt runs the same graphs on TensorRT through onnxruntime today"


def missing_packages() -> list[str]:
    """Packages of REQUIRED_MODULES that this host cannot import (found without importing them)."""
    return [package for module, package in REQUIRED_MODULES.items() if not _importable(module)]


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package (`cuda`) is absent
        return False


def load(export_dir: Path, threads: int | None = None) -> CheckedBackend:
    """`load_backend("tensorrt", export_dir=...)`: always a ConfigError until engines exist; `threads`
    is accepted because every backend gets it (TensorRT has no CPU threads to set)."""
    missing = missing_packages()
    if missing:
        raise ConfigError(
            f"backend 'tensorrt' for {export_dir}: the native TensorRT backend needs {', '.join(missing)} "
            f"(pip install 'mqc-edge[gpu]'), not installed here; {FALLBACK}"
        )
    raise ConfigError(
        f"backend 'tensorrt' for {export_dir}: native TensorRT engines are built by the precision issue's "
        f"`mqc-edge build`, not available yet; {FALLBACK}"
    )
