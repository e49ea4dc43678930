"""Checkpoints: bit-exact round trip, official SAM 2.1 layout, typed errors for bad files."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from mqc_edge.errors import CheckpointError
from mqc_edge.model.checkpoint import (
    MQC_PARTS,
    NO_TEXT_MODEL,
    TEXT_MODEL_KEY,
    TEXT_MODEL_PREFIX,
    load_checkpoint,
    load_tensors_into,
    read_safetensors,
    save_checkpoint,
)
from mqc_edge.model.mqc_sam import MQCSAMConfig


@pytest.fixture(scope="module")
def trained(mqc_model):
    """A copy of the session model with every MQC tensor moved off its init, as after training."""
    model = copy.deepcopy(mqc_model)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if not name.startswith(("sam.", TEXT_MODEL_PREFIX)):
                parameter.add_(torch.randn_like(parameter))
    return model


@pytest.fixture(scope="module")
def saved(trained, tmp_path_factory):
    """`trained`, saved without the text model."""
    path = tmp_path_factory.mktemp("ckpt") / "model.safetensors"
    save_checkpoint(trained, path)
    return path


def test_round_trip_is_bit_exact(trained, saved):
    loaded, report = load_checkpoint(saved)
    assert loaded.config == trained.config
    original, restored = trained.state_dict(), loaded.state_dict()
    assert original.keys() == restored.keys()
    for key, tensor in original.items():
        assert torch.equal(tensor, restored[key]), key
    assert report.source == "mqc-edge" and report.fresh_parts == ()
    assert report.text_encoder_weights == str(trained.text_encoder.model_path)


def test_text_model_is_left_out_unless_asked(trained, saved, tmp_path):
    with safe_open(str(saved), framework="pt") as handle:
        assert not any(key.startswith(TEXT_MODEL_PREFIX) for key in handle.keys())
    with_text = tmp_path / "with_text.safetensors"
    save_checkpoint(trained, with_text, include_text_encoder=True)
    with safe_open(str(with_text), framework="pt") as handle:
        text_keys = [key for key in handle.keys() if key.startswith(TEXT_MODEL_PREFIX)]
    expected = [key for key in trained.state_dict() if key.startswith(TEXT_MODEL_PREFIX)]
    assert sorted(text_keys) == sorted(expected)
    assert with_text.stat().st_size > saved.stat().st_size
    report = load_tensors_into(trained, _tensors(with_text), with_text, "mqc-edge")
    assert report.text_encoder_weights == "checkpoint"


def test_official_sam2_checkpoint_loads_into_sam_and_reports_fresh_parts(mqc_model, tmp_path):
    from sam2.build_sam import build_sam2

    torch.manual_seed(1)
    official = build_sam2(
        "configs/sam2.1/sam2.1_hiera_t.yaml", device="cpu", hydra_overrides_extra=["++model.image_size=128"]
    )
    path = tmp_path / "sam2.1_hiera_tiny.pt"
    torch.save({"model": official.state_dict()}, path)
    model, report = load_checkpoint(path, config=mqc_model.config)
    for key, tensor in official.state_dict().items():
        assert torch.equal(model.sam.state_dict()[key], tensor), key
    assert report.source == "sam2-official"
    assert report.fresh_parts == MQC_PARTS  # MoGA and the uncertainty head are on in this config, so all six start fresh
    assert "fresh (untrained) MQC parts: text_encoder.projection, fusion, dami, robustness, moga" in str(report)


def test_wrong_shape_names_the_tensor_and_both_shapes(mqc_model, saved):
    tensors = _tensors(saved)
    tensors["fusion.to_dense.weight"] = torch.zeros(256, 128)
    expected = r"'fusion.to_dense.weight' expected shape \[256, 256\], got \[256, 128\]"
    with pytest.raises(CheckpointError, match=expected):
        load_tensors_into(mqc_model, tensors, saved, "mqc-edge")


def test_unknown_and_partly_missing_tensors_are_refused(mqc_model, saved):
    tensors = _tensors(saved)
    with pytest.raises(CheckpointError, match="does not have.*'extra.weight'"):
        load_tensors_into(mqc_model, tensors | {"extra.weight": torch.zeros(1)}, saved, "mqc-edge")
    del tensors["dami.fifo_bias"]
    with pytest.raises(CheckpointError, match=r"1 of 2 tensors under 'dami\.' missing.*dami.fifo_bias"):
        load_tensors_into(mqc_model, tensors, saved, "mqc-edge")


def test_config_that_differs_from_the_saved_one_is_refused(mqc_model, saved):
    from dataclasses import replace

    with pytest.raises(CheckpointError, match="saved with config"):
        load_checkpoint(saved, config=replace(mqc_model.config, fusion_layers=3))


def test_unreadable_files_are_checkpoint_errors(tmp_path):
    pickled = tmp_path / "code.pt"
    torch.save({"model": _NotATensor()}, pickled)
    with pytest.raises(CheckpointError, match="objects besides tensors, refused by torch.load.weights_only=True."):
        load_checkpoint(pickled)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(CheckpointError, match="not a readable torch file"):
        load_checkpoint(truncated)
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(2)}, plain)
    with pytest.raises(CheckpointError, match="Meta's SAM 2 layout"):
        load_checkpoint(plain)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"x": torch.zeros(2)}, str(foreign))
    with pytest.raises(CheckpointError, match="metadata format expected"):
        load_checkpoint(foreign)
    with pytest.raises(CheckpointError, match=r"expected .safetensors, .pt or .pth, got '.bin'"):
        (tmp_path / "model.bin").write_bytes(b"0")
        load_checkpoint(tmp_path / "model.bin")
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(tmp_path / "missing.safetensors")


class _NotATensor:
    """Anything a weights-only unpickler must refuse."""


def _tensors(path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt") as handle:
        return {key: handle.get_tensor(key) for key in handle.keys()}


def test_config_json_round_trip_and_validation():
    from mqc_edge.errors import ConfigError
    from mqc_edge.model.mqc_sam import MQCSAMConfig

    config = MQCSAMConfig(sam2_variant="small", image_size=256, moga=True)
    assert MQCSAMConfig.from_json(config.to_json(), "x.json") == config
    with pytest.raises(ConfigError, match=r"x.json: unknown model config keys \['colour'\]"):
        MQCSAMConfig.from_json('{"colour": 1}', "x.json")
    with pytest.raises(ConfigError, match="multiple of 32.*got 250"):
        MQCSAMConfig(image_size=250)
    with pytest.raises(ConfigError, match="sam2_variant.*got 'huge'"):
        MQCSAMConfig(sam2_variant="huge")


def test_text_model_false_skips_its_tensors_and_the_file_remembers(trained, tmp_path):
    with_text = tmp_path / "with_text.safetensors"
    save_checkpoint(trained, with_text, include_text_encoder=True)
    bare, report = load_checkpoint(with_text, text_model=False)  # the language model's tensors are skipped
    assert bare.text_encoder.language_model is None and report.text_encoder_weights == NO_TEXT_MODEL
    assert torch.equal(bare.text_encoder.projection.weight, trained.text_encoder.projection.weight)
    resaved = tmp_path / "bare.safetensors"
    save_checkpoint(bare, resaved)
    with safe_open(str(resaved), framework="pt") as handle:
        metadata = handle.metadata()
    assert metadata[TEXT_MODEL_KEY] == "absent" and MQCSAMConfig.from_json(metadata["config"], "") == trained.config
    assert load_checkpoint(resaved)[0].text_encoder.language_model is None  # as saved
    full, report = load_checkpoint(resaved, text_model=True)  # the same tensors, built with the language model
    assert full.text_encoder.language_model is not None and report.fresh_parts == ()


def _metadata_keys_as_written(path) -> list[str]:
    raw = path.read_bytes()
    size = int.from_bytes(raw[:8], "little")
    return list(json.loads(raw[8:8 + size])["__metadata__"])


WRITE_IN_A_FRESH_PROCESS = """
import sys, torch
from mqc_edge.model.checkpoint import write_safetensors
write_safetensors(sys.argv[1], {"b": torch.arange(6.0).reshape(2, 3), "a": torch.ones(4, dtype=torch.int32)},
                  {"format": "f", "config": "{\\"x\\": 1}", "zeta": "z", "alpha": "\\u00e9"})
"""


def test_safetensors_files_are_byte_identical_across_processes(tmp_path):
    """safetensors orders metadata keys differently per process; ours sorts them, so one content
    gives one SHA-256 (shipped weights, exports' weights.safetensors)."""
    paths = [tmp_path / f"w{index}.safetensors" for index in range(4)]
    for path in paths:
        subprocess.run([sys.executable, "-c", WRITE_IN_A_FRESH_PROCESS, str(path)], check=True)
    assert len({path.read_bytes() for path in paths}) == 1
    assert _metadata_keys_as_written(paths[0]) == ["alpha", "config", "format", "zeta"]
    tensors, metadata = read_safetensors(paths[0])
    assert metadata == {"format": "f", "config": '{"x": 1}', "zeta": "z", "alpha": "\u00e9"}
    assert torch.equal(tensors["b"], torch.arange(6.0).reshape(2, 3)) and tensors["a"].dtype == torch.int32


def test_saved_checkpoint_writes_sorted_metadata(saved):
    keys = _metadata_keys_as_written(saved)
    assert keys == sorted(keys) and "config" in keys
