"""Cutting a safetensors file into parts small enough to come back from the GPU machine, and
joining them back into the same file."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from mqc_edge.errors import CheckpointError
from mqc_edge.training.ship import join_checkpoints, main, split_checkpoint

METADATA = {"format": "mqc-edge-checkpoint", "config": '{"image_size": 64, "note": "quotes \\" and ü"}'}


def _read(path):
    with safe_open(str(path), framework="pt") as handle:
        return {key: handle.get_tensor(key) for key in handle.keys()}, handle.metadata()


@pytest.fixture
def checkpoint(tmp_path):
    generator = torch.Generator().manual_seed(0)
    tensors = {f"layer{i}.weight": torch.randn(50, 50, generator=generator) for i in range(5)}  # 10,000 bytes each
    tensors["layer5.steps"] = torch.arange(1250, dtype=torch.int64)
    tensors["mask"] = torch.ones(3, 7, dtype=torch.bool)
    path = tmp_path / "model.safetensors"
    save_file(tensors, str(path), metadata=METADATA)
    return path


def test_split_makes_small_parts_and_join_restores_the_file(checkpoint, tmp_path) -> None:
    parts = split_checkpoint(checkpoint, tmp_path / "parts", max_bytes=25_000)
    assert [part.name for part in parts] == [f"model.part{i}.safetensors" for i in (1, 2, 3)]
    for index, part in enumerate(parts, start=1):
        assert part.stat().st_size <= 25_000
        assert _read(part)[1] == {**METADATA, "part": f"{index}/3"}
    joined = join_checkpoints(parts[::-1], tmp_path / "joined.safetensors")
    (tensors, metadata), (expected, expected_metadata) = _read(joined), _read(checkpoint)
    assert metadata == expected_metadata and tensors.keys() == expected.keys()
    assert all(torch.equal(tensors[key], expected[key]) and tensors[key].dtype == expected[key].dtype for key in expected)


def test_a_tensor_over_the_part_size_is_named(checkpoint, tmp_path) -> None:
    with pytest.raises(CheckpointError, match="layer0.weight"):
        split_checkpoint(checkpoint, tmp_path / "parts", max_bytes=9_000)


def test_join_refuses_an_incomplete_set(checkpoint, tmp_path) -> None:
    parts = split_checkpoint(checkpoint, tmp_path / "parts", max_bytes=25_000)
    with pytest.raises(CheckpointError, match=r"parts \[2\] of 3"):
        join_checkpoints([parts[0], parts[2]], tmp_path / "joined.safetensors")


def test_cli_splits_and_joins(checkpoint, tmp_path, capsys) -> None:
    assert main(["--split", str(tmp_path / "parts"), str(checkpoint)]) == 0
    parts = sorted((tmp_path / "parts").glob("model.part*.safetensors"))
    assert len(parts) == 1  # 15 MiB default
    assert main(["--join", str(tmp_path / "joined.safetensors"), *map(str, parts)]) == 0
    (tensors, metadata), (expected, expected_metadata) = _read(tmp_path / "joined.safetensors"), _read(checkpoint)
    assert metadata == expected_metadata and all(torch.equal(tensors[key], expected[key]) for key in expected)
    assert main(["--join", str(tmp_path / "again.safetensors"), str(tmp_path / "absent.safetensors")]) == 2
    assert "absent.safetensors" in capsys.readouterr().err
