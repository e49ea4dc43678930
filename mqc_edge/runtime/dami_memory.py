"""DAMI memory for MQC mode: fixed anchor / FIFO / prototype slots inside the backend,
bookkeeping on the host (CroBIM-V DAMI; DESIGN section 5 steps 3-4).

Slots are ordered anchor, FIFO, prototypes (contract `dami_attention`), memory and pointer
slots alike. The anchor is written once, from frame 0 and its calibrated mask, and never
evicted; the FIFO overwrites its oldest write; a prototype replaces the lowest-scored one,
and only when it scores higher. Nothing here grows with the video: the buffers are allocated
once with the stage's static shapes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mqc_edge.contract import ModelGeometry, MQCGeometry, stage_specs
from mqc_edge.runtime.backend import Handle, StageBackend
from mqc_edge.runtime.gates import choose_fifo_to_evict, choose_prototype_to_evict

EMPTY = -1
"""Frame index of a slot that holds nothing yet."""


@dataclass
class DAMIBank:
    """Slot buffers (backend handles) and, per slot, the frame it holds and its robustness score."""

    memory: Handle  # [N_max, mem_dim, h, w] memory features
    memory_frames: np.ndarray  # int64 [N_max]: frame index per memory slot, EMPTY if none
    memory_scores: np.ndarray  # float64 [N_max]: s_t of prototype slots, NaN when empty or not a prototype
    obj_ptrs: Handle  # [P, hidden_dim] object pointers
    ptr_frames: np.ndarray  # int64 [P]
    ptr_scores: np.ndarray  # float64 [P]


def new_dami_bank(backend: StageBackend) -> DAMIBank:
    """An empty bank whose buffers have the dami_attention stage's static shapes."""
    spec = stage_specs(backend.geometry)["dami_attention"]
    memory, ptrs = spec.input("memory"), spec.input("obj_ptrs")
    return DAMIBank(
        memory=backend.zeros(memory),
        memory_frames=np.full(memory.shape[0], EMPTY, np.int64),
        memory_scores=np.full(memory.shape[0], np.nan),
        obj_ptrs=backend.zeros(ptrs),
        ptr_frames=np.full(ptrs.shape[0], EMPTY, np.int64),
        ptr_scores=np.full(ptrs.shape[0], np.nan),
    )


def bank_slots(m: MQCGeometry, bank: str) -> tuple[slice, slice]:
    """Memory-slot and pointer-slot ranges of `bank` ('anchor', 'fifo' or 'prototypes')."""
    memory = {"anchor": (0, m.anchor_slots), "fifo": (m.anchor_slots, m.fifo_slots),
              "prototypes": (m.anchor_slots + m.fifo_slots, m.prototype_slots)}[bank]
    pointers = {"anchor": (0, m.anchor_pointers), "fifo": (m.anchor_pointers, m.fifo_pointers),
                "prototypes": (m.anchor_pointers + m.fifo_pointers, m.prototype_pointers)}[bank]
    return slice(memory[0], sum(memory)), slice(pointers[0], sum(pointers))


def register_anchor(bank: DAMIBank, backend: StageBackend, frame_index: int, memory: Handle, obj_ptr: Handle) -> None:
    """The semantic anchor: memory_encoder(frame 0, calibrated mask) into the fixed anchor slot."""
    memory_slots, ptr_slots = bank_slots(_mqc(backend), "anchor")
    _write(backend, bank.memory, bank.memory_frames, memory_slots.start, frame_index, memory)
    _write(backend, bank.obj_ptrs, bank.ptr_frames, ptr_slots.start, frame_index, obj_ptr)


def register_fifo(bank: DAMIBank, backend: StageBackend, frame_index: int, memory: Handle, obj_ptr: Handle) -> None:
    """Short-term bank: overwrite an empty slot, else the oldest write (FIFO eviction)."""
    memory_slots, ptr_slots = bank_slots(_mqc(backend), "fifo")
    for buffer, frames, slots, value in ((bank.memory, bank.memory_frames, memory_slots, memory),
                                         (bank.obj_ptrs, bank.ptr_frames, ptr_slots, obj_ptr)):
        if slots.stop > slots.start:
            slot = slots.start + choose_fifo_to_evict(frames[slots])
            _write(backend, buffer, frames, slot, frame_index, value)


def register_prototype(bank: DAMIBank, backend: StageBackend, frame_index: int, memory: Handle, obj_ptr: Handle,
                       score: float) -> bool:
    """Prototype bank: fill an empty slot, else replace the lowest score if `score` beats it.
    Returns whether the frame was written."""
    memory_slots, ptr_slots = bank_slots(_mqc(backend), "prototypes")
    written = False
    for buffer, frames, scores, slots, value in (
        (bank.memory, bank.memory_frames, bank.memory_scores, memory_slots, memory),
        (bank.obj_ptrs, bank.ptr_frames, bank.ptr_scores, ptr_slots, obj_ptr),
    ):
        if slots.stop == slots.start:
            continue
        slot = slots.start + choose_prototype_to_evict(scores[slots])
        if np.isnan(scores[slot]) or score > scores[slot]:
            _write(backend, buffer, frames, slot, frame_index, value)
            scores[slot] = score
            written = True
    return written


def _write(backend: StageBackend, buffer: Handle, frames: np.ndarray, slot: int, frame_index: int,
           value: Handle) -> None:
    backend.write_slot(buffer, slot, value)
    frames[slot] = frame_index


def _mqc(backend: StageBackend) -> MQCGeometry:
    return backend.geometry.mqc


def recency_rank(frames: np.ndarray) -> np.ndarray:
    """int64 rank of each filled slot among the filled ones, 0 = newest; 0 for empty slots."""
    filled = frames != EMPTY
    newer = (frames[None, :] > frames[:, None]) & filled[None, :]
    return np.where(filled, newer.sum(axis=1), 0).astype(np.int64)


def dami_inputs(bank: DAMIBank, frame_index: int, geometry: ModelGeometry) -> dict[str, np.ndarray]:
    """Validity masks, FIFO ages and pointer distances for dami_attention on `frame_index`.

    Every filled slot counts, however old: the gates chose what is in memory, not recency.
    Pointer distances are clipped to max_obj_ptrs - 1, the range SAM 2's pointer encoding
    was trained on, because the anchor's pointer grows as old as the video.
    """
    m = geometry.mqc
    fifo_memory, fifo_ptrs = bank_slots(m, "fifo")
    ptr_valid = bank.ptr_frames != EMPTY
    distance = np.minimum(frame_index - bank.ptr_frames, geometry.max_obj_ptrs - 1)
    return {
        "memory_valid": bank.memory_frames != EMPTY,
        "fifo_age": recency_rank(bank.memory_frames[fifo_memory]),
        "obj_ptr_tpos": np.where(ptr_valid, distance, 0).astype(np.int64),
        "obj_ptr_valid": ptr_valid,
        "ptr_fifo_age": recency_rank(bank.ptr_frames[fifo_ptrs]),
    }
