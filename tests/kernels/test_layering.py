"""kernels/ sits below model/: the model builds on the kernels, never the other way round."""

from __future__ import annotations

import ast
from pathlib import Path

import mqc_edge.kernels

KERNELS = Path(mqc_edge.kernels.__file__).parent


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    return names | {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}


def test_kernels_import_nothing_from_the_model() -> None:
    upward = {path.name: sorted(name for name in _imported_modules(path) if name.startswith("mqc_edge.model"))
              for path in sorted(KERNELS.glob("*.py"))}
    assert {name: modules for name, modules in upward.items() if modules} == {}
