"""Memory bank: fixed buffers, FIFO eviction of ring slots, SAM 2's ids and validity."""

from __future__ import annotations

import numpy as np

from mqc_edge.contract import ModelGeometry, TensorSpec
from mqc_edge.runtime.backends.stage_backend import slot_index
from mqc_edge.runtime.sam2.memory_bank import EMPTY, new_memory_bank

GEOMETRY = ModelGeometry(image_size=64)


class NumpyBackend:
    """Handles are numpy arrays: enough for the bank, which never runs a stage."""

    geometry = GEOMETRY

    def zeros(self, spec: TensorSpec) -> np.ndarray:
        return np.zeros(spec.shape, dtype=spec.dtype)

    def write_slot(self, buffer: np.ndarray, index: int, value: np.ndarray) -> None:
        buffer[slot_index(buffer.ndim, value.ndim, index)] = value[0]


def _memory(frame: int) -> np.ndarray:
    return np.full((1, GEOMETRY.mem_dim, GEOMETRY.feat_size, GEOMETRY.feat_size), frame, np.float32)


def _ptr(frame: int) -> np.ndarray:
    return np.full((1, GEOMETRY.hidden_dim), frame, np.float32)


def _bank_after(frames: range):
    backend = NumpyBackend()
    bank = new_memory_bank(backend)
    bank.register_conditioning_frame(0, _memory(0), _ptr(0))
    for frame in frames:
        bank.register_frame(frame, _memory(frame), _ptr(frame))
    return bank


def test_bank_stays_bounded_and_keeps_the_most_recent_frames() -> None:
    bank = _bank_after(range(1, 101))
    assert bank.memory.shape == (1, 7, 64, 4, 4) and bank.obj_ptrs.shape == (1, 16, 256)
    assert bank.memory_frames[0] == 0 and sorted(bank.memory_frames[1:]) == list(range(95, 101))
    assert bank.ptr_frames[0] == 0 and sorted(bank.ptr_frames[1:]) == list(range(86, 101))
    # each slot's tensor is the frame its bookkeeping names
    assert all(bank.memory[0, slot, 0, 0, 0] == frame for slot, frame in enumerate(bank.memory_frames))
    assert all(bank.obj_ptrs[0, slot, 0] == frame for slot, frame in enumerate(bank.ptr_frames))


def test_ring_fills_empty_slots_first_then_evicts_the_oldest() -> None:
    bank = _bank_after(range(1, 7))
    assert list(bank.memory_frames) == [0, 1, 2, 3, 4, 5, 6]
    bank.register_frame(7, _memory(7), _ptr(7))
    assert list(bank.memory_frames) == [0, 7, 2, 3, 4, 5, 6]
    assert bank.ptr_frames[8] == EMPTY and bank.ptr_frames[7] == 7


def test_attention_inputs_follow_sam2_temporal_ids() -> None:
    bank = _bank_after(range(1, 30))
    inputs = bank.attention_inputs(30)
    by_frame = dict(zip(bank.memory_frames, inputs["memory_tpos"]))
    # conditioning frame: id num_maskmem-1; a frame d steps back: id d-1
    assert by_frame == {0: 6, 29: 0, 28: 1, 27: 2, 26: 3, 25: 4, 24: 5}
    assert inputs["memory_valid"].all()
    assert dict(zip(bank.ptr_frames, inputs["obj_ptr_tpos"])) == {t: 30 - t for t in bank.ptr_frames}
    assert inputs["obj_ptr_valid"].all()


def test_slots_too_far_back_are_invalid_and_empty_slots_never_count() -> None:
    bank = _bank_after(range(1, 4))
    inputs = bank.attention_inputs(10)
    # frames 1..3 are 9..7 steps back: beyond SAM 2's 6 recent memories, within 15 pointers
    assert list(inputs["memory_valid"]) == [True] + [False] * 6
    assert list(inputs["obj_ptr_valid"]) == [True, True, True, True] + [False] * 12
    assert inputs["memory_tpos"].dtype == np.int64 and inputs["obj_ptr_tpos"].dtype == np.int64
