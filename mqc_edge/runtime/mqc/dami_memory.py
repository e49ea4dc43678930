"""DAMI memory for MQC mode: fixed anchor / FIFO / prototype slots inside the backend,
bookkeeping on the host (CroBIM-V DAMI; DESIGN section 5 steps 3-4).

Slots are ordered anchor, FIFO, prototypes (`contract.MemorySplit`, stage `dami_attention`),
memory and pointer slots alike. The anchor is written once, from frame 0 and its calibrated
mask, and never evicted; the FIFO overwrites its oldest write; a prototype replaces the
lowest-scored one, and only when it scores higher. The gates (runtime/mqc/gates.py) decide whether
a frame enters a bank; the bank decides where. Nothing here grows with the video: the buffers
are allocated once with the stage's static shapes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from mqc_edge.contract import MemorySplit, stage_specs
from mqc_edge.errors import ConfigError
from mqc_edge.runtime.backends.stage_backend import Handle, StageBackend
from mqc_edge.runtime.slots import EMPTY, SlotBank, choose_fifo_to_evict, empty_frames


@dataclass
class DAMIBank(SlotBank):
    """One object's DAMI memory: `memory` [N_max, mem_dim, h, w], `obj_ptrs` [P, hidden_dim], the
    split that divides them into banks, and per slot the robustness score of a prototype."""

    split: MemorySplit
    memory_scores: np.ndarray  # float64 [N_max]: s_t of prototype slots, NaN when empty or not a prototype
    ptr_scores: np.ndarray  # float64 [P]

    def register_anchor(self, frame_index: int, memory: Handle, obj_ptr: Handle) -> None:
        """The semantic anchor: memory_encoder(frame 0, calibrated mask) into the fixed anchor slot."""
        self._register("anchor", frame_index, memory, obj_ptr, lambda frames, scores: 0)

    def register_fifo(self, frame_index: int, memory: Handle, obj_ptr: Handle) -> None:
        """Short-term bank: overwrite an empty slot, else the oldest write (FIFO eviction)."""
        self._register("fifo", frame_index, memory, obj_ptr, lambda frames, scores: choose_fifo_to_evict(frames))

    def register_prototype(self, frame_index: int, memory: Handle, obj_ptr: Handle, score: float) -> bool:
        """Prototype bank: fill an empty slot, else replace the lowest score if `score` beats it.
        Returns whether the frame was written."""

        def choose(frames: np.ndarray, scores: np.ndarray) -> int | None:
            slot = choose_prototype_to_evict(scores)
            return slot if np.isnan(scores[slot]) or score > scores[slot] else None

        return self._register("prototypes", frame_index, memory, obj_ptr, choose, score)

    def dami_inputs(self, frame_index: int) -> dict[str, np.ndarray]:
        """Validity masks, FIFO ages and pointer distances for dami_attention on `frame_index`.

        Every filled slot counts, however old: the gates chose what is in memory, not recency.
        Pointer distances are clipped to max_obj_ptrs - 1, the range SAM 2's pointer encoding
        was trained on, because the anchor's pointer grows as old as the video.
        """
        fifo_memory, fifo_ptrs = self.split.bank_slots("fifo")
        ptr_valid = self.ptr_frames != EMPTY
        distance = np.minimum(frame_index - self.ptr_frames, self.backend.geometry.max_obj_ptrs - 1)
        return {
            "memory_valid": self.memory_frames != EMPTY,
            "fifo_age": recency_rank(self.memory_frames[fifo_memory]),
            "obj_ptr_tpos": np.where(ptr_valid, distance, 0).astype(np.int64),
            "obj_ptr_valid": ptr_valid,
            "ptr_fifo_age": recency_rank(self.ptr_frames[fifo_ptrs]),
        }

    def _register(self, bank: str, frame_index: int, memory: Handle, obj_ptr: Handle,
                  choose: Callable[[np.ndarray, np.ndarray], int | None], score: float = np.nan) -> bool:
        """Write the frame into the memory and the pointer slots of `bank` (each that has slots) at the
        slot `choose(frames, scores)` picks among the bank's, None for none; returns whether it wrote."""
        written = False
        for (buffer, frames, value), scores, slots in zip(
            self._tables(memory, obj_ptr), (self.memory_scores, self.ptr_scores), self.split.bank_slots(bank)
        ):
            if slots.stop == slots.start:
                continue
            slot = choose(frames[slots], scores[slots])
            if slot is not None:
                self._write(buffer, frames, slots.start + slot, frame_index, value)
                scores[slots.start + slot] = score
                written = True
        return written


def new_dami_bank(backend: StageBackend) -> DAMIBank:
    """An empty bank bound to `backend`, its buffers shaped as the dami_attention stage's."""
    spec = stage_specs(backend.geometry)["dami_attention"]
    memory, ptrs = spec.input("memory"), spec.input("obj_ptrs")
    return DAMIBank(
        backend, backend.zeros(memory), empty_frames(memory.shape[0]), backend.zeros(ptrs), empty_frames(ptrs.shape[0]),
        split=backend.geometry.mqc,
        memory_scores=np.full(memory.shape[0], np.nan),
        ptr_scores=np.full(ptrs.shape[0], np.nan),
    )


def choose_prototype_to_evict(scores: Sequence[float]) -> int:
    """Prototype eviction: the slot to overwrite is an empty one (NaN) if any, else the lowest
    robustness score (the first of equals, i.e. the earliest-filled slot)."""
    values = np.asarray(scores, dtype=np.float64)
    if values.size == 0:
        raise ConfigError("prototype bank: expected at least 1 slot, got 0")
    empty = np.flatnonzero(np.isnan(values))
    return int(empty[0]) if empty.size else int(np.argmin(values))


def recency_rank(frames: np.ndarray) -> np.ndarray:
    """int64 rank of each filled slot among the filled ones, 0 = newest; 0 for empty slots."""
    filled = frames != EMPTY
    newer = (frames[None, :] > frames[:, None]) & filled[None, :]
    return np.where(filled, newer.sum(axis=1), 0).astype(np.int64)
