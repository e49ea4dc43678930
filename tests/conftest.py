"""Shared across the suite: one export per test session (issue 12: CI stays fast), a tiny MQC-SAM at 128 px, exported
through the CLI exactly as a user would, so every stage of both modes is in it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mqc_edge.cli import main
from mqc_edge.model.checkpoint import save_checkpoint
from mqc_edge.model.mqc_sam import MQCSAM, MQCSAMConfig
from suite_helpers import EXPRESSIONS

torch.set_num_threads(1)  # shared 2-core CI box: tests check values, not speed

IMAGE_SIZE = 128


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, dict]:
    """(export dir, CLI exit code, manifest) of a random-weight MQC-SAM tiny."""
    root = tmp_path_factory.mktemp("export")
    torch.manual_seed(0)
    checkpoint = root / "mqc.safetensors"
    # the shipped default's fusion reads positions (fusion_positional_values): its export is what parity checks
    save_checkpoint(MQCSAM(MQCSAMConfig(image_size=IMAGE_SIZE, max_text_tokens=16, fusion_positional_values=True)),
                    checkpoint)
    texts = root / "expressions.txt"
    texts.write_text("\n".join(EXPRESSIONS) + "\n\n")
    out = root / "model"
    code = main(["export", "--checkpoint", str(checkpoint), "--out", str(out), "--opset", "18", "--texts", str(texts)])
    return out, code, json.loads((out / "manifest.json").read_text())


@pytest.fixture(scope="session")
def backends(exported):
    """(torch reference from the export dir, onnxruntime CPU backend of it)."""
    from mqc_edge.export.reference import load_reference
    from mqc_edge.runtime.backends.stage_backend import load_backend

    out = exported[0]
    return load_reference(out), load_backend("onnxruntime", export_dir=out, threads=1)
