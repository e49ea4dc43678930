"""The constant-memory guard (issue 5 item 7, light): 40 vs 160 streamed frames at 128 px; Meta's predictor
beside it (issue 13 item 5) over 30 frames."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np
import pytest

from mqc_edge.benchmarks.memory import state_array_bytes
from mqc_edge.benchmarks.memory_soak import SoakConfig, soak
from mqc_edge.contract import stage_specs
from mqc_edge.errors import ConfigError
from mqc_edge.runtime.manifest import load_manifest


@dataclass
class _State:
    slots: np.ndarray
    extra: dict = field(default_factory=dict)
    name: str = "x"


def test_state_array_bytes_by_hand() -> None:
    state = _State(np.zeros((2, 5), np.float32), {"ids": np.zeros(3, np.int64), "nested": [np.zeros(1, np.uint8), None]})
    assert state_array_bytes(state) == 2 * 5 * 4 + 3 * 8 + 1


@pytest.mark.parametrize("encode_ahead", [False, True])
def test_memory_stays_flat_from_40_to_160_frames(exported, tmp_path, encode_ahead: bool) -> None:
    config = SoakConfig(exported[0], tmp_path, frames=160, baseline_frame=40, every=40, size=128, threads=1,
                        encode_ahead=encode_ahead)
    report = soak(config)
    assert report["mode"] == "mqc"
    assert [sample["frame"] for sample in report["samples"]] == [40, 80, 120, 160]
    memory_slots = stage_specs(load_manifest(exported[0]).geometry)["dami_attention"].input("memory")
    slot_bytes = int(np.prod(memory_slots.shape)) * 4
    assert all(sample["state_bytes"] >= slot_bytes for sample in report["samples"])
    assert len({sample["state_bytes"] for sample in report["samples"]}) == 1
    assert abs(report["growth"]) < 0.05 and report["within_tolerance"] and report["state_bytes_constant"]
    assert json.loads((tmp_path / "memory.json").read_text())["growth"] == report["growth"]
    assert (tmp_path / "memory.png").stat().st_size > 0


def test_baseline_must_come_before_the_end(tmp_path) -> None:
    with pytest.raises(ConfigError, match="baseline frame"):
        SoakConfig(tmp_path, tmp_path, frames=100, baseline_frame=100)


def test_meta_predictor_beside_the_soak(exported, tmp_path) -> None:
    config = SoakConfig(exported[0], tmp_path, frames=40, baseline_frame=20, every=10, size=128, threads=1,
                        meta_frames=30)
    meta = soak(config)["meta"]
    assert [sample["frame"] for sample in meta["samples"]] == [10, 20, 30] and meta["frames"] == 30
    resident = [meta["before_init_resident_mib"], meta["after_init_resident_mib"], meta["final_resident_mib"]]
    assert all(value > 0 for value in resident) and all(sample["resident_bytes"] > 0 for sample in meta["samples"])
    assert isinstance(meta["growth_mib_per_1000_frames"], float) and math.isfinite(meta["growth_mib_per_1000_frames"])
    assert json.loads((tmp_path / "memory.json").read_text())["meta"] == meta


def test_meta_frames_must_not_be_negative(tmp_path) -> None:
    with pytest.raises(ConfigError, match="meta frames"):
        SoakConfig(tmp_path, tmp_path, frames=100, baseline_frame=10, meta_frames=-1)
