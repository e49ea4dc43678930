"""DAMI slots: fixed anchor, FIFO eviction of the oldest write, prototypes replaced only by a better score."""

from __future__ import annotations

import numpy as np

import pytest

from mqc_edge.errors import ConfigError
from mqc_edge.runtime.mqc.dami_memory import EMPTY, choose_prototype_to_evict, new_dami_bank, recency_rank


def _value(backend, name: str, fill: float) -> np.ndarray:
    spec = backend.specs["dami_attention"].input(name)
    return np.full((1, *spec.shape[1:]), fill, np.float32)


def test_prototypes_fill_then_replace_only_the_lowest_score_by_a_higher_one(fake_backend) -> None:
    bank = new_dami_bank(fake_backend)
    slots, _ = bank.split.bank_slots("prototypes")

    def add(frame: int, score: float) -> bool:
        memory, ptr = _value(fake_backend, "memory", frame), _value(fake_backend, "obj_ptrs", frame)
        return bank.register_prototype(frame, memory, ptr, score)

    assert add(3, 0.7) and add(5, 0.6)
    assert not add(8, 0.55), "a worse prototype must not evict a better one"
    assert add(9, 0.9)
    assert sorted(bank.memory_frames[slots].tolist()) == [3, 9]
    assert sorted(bank.memory_scores[slots].tolist()) == [0.7, 0.9]
    assert bank.memory[slots.start : slots.stop, 0, 0, 0].tolist() == bank.memory_frames[slots].tolist()


def test_fifo_keeps_the_newest_writes_and_the_anchor_stays(fake_backend) -> None:
    bank = new_dami_bank(fake_backend)
    m = fake_backend.geometry.mqc
    bank.register_anchor(0, _value(fake_backend, "memory", 0), _value(fake_backend, "obj_ptrs", 0))
    for frame in range(1, 12):
        bank.register_fifo(frame, _value(fake_backend, "memory", frame), _value(fake_backend, "obj_ptrs", frame))
    anchor, _ = m.bank_slots("anchor")
    fifo, fifo_ptrs = m.bank_slots("fifo")
    assert bank.memory_frames[anchor].tolist() == [0]
    assert sorted(bank.memory_frames[fifo].tolist()) == list(range(12 - m.fifo_slots, 12))
    inputs = bank.dami_inputs(40)
    newest_first = np.argsort(-bank.memory_frames[fifo])
    assert inputs["fifo_age"][newest_first].tolist() == list(range(m.fifo_slots))
    assert inputs["memory_valid"].tolist() == [True] * (1 + m.fifo_slots) + [False] * m.prototype_slots
    assert inputs["obj_ptr_tpos"].max() == fake_backend.geometry.max_obj_ptrs - 1  # 40 frames back, clipped


def test_recency_rank_ignores_empty_slots() -> None:
    assert recency_rank(np.array([4, EMPTY, 9, 1])).tolist() == [1, 0, 0, 2]


def test_prototype_eviction_fills_empty_slots_then_drops_the_lowest_score() -> None:
    assert choose_prototype_to_evict([0.7, np.nan, 0.2]) == 1
    assert choose_prototype_to_evict([0.7, 0.55, 0.9]) == 1
    assert choose_prototype_to_evict([0.6, 0.6, 0.8]) == 0
    with pytest.raises(ConfigError):
        choose_prototype_to_evict([])
