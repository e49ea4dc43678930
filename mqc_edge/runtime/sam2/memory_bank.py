"""SAM 2 mode's memory bank: preallocated slots inside the backend, bookkeeping on the host.

SAM 2's selection (sam2_base.py `_prepare_memory_conditioned_features`) in fixed slots:
memory slot 0 holds the conditioning (prompted) frame, slots 1..N_max-1 a FIFO ring of the
most recent frames; pointer slot 0 holds the conditioning frame's object pointer, slots
1..P_max-1 a FIFO ring of recent pointers. Registering a frame overwrites the oldest ring
slot, so memory never grows with video length (Meta's predictor keeps every frame).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mqc_edge.contract import OBJECTS, stage_specs
from mqc_edge.runtime.backends.stage_backend import Handle, StageBackend
from mqc_edge.runtime.slots import EMPTY, SlotBank, choose_fifo_to_evict, empty_frames


@dataclass
class MemoryBank(SlotBank):
    """One object's SAM 2 memory: `memory` [1, N_max, mem_dim, h, w], `obj_ptrs` [1, P_max, hidden_dim]
    (a batch of one object, as memory_attention takes them)."""

    def register_conditioning_frame(self, frame_index: int, memory: Handle, obj_ptr: Handle) -> None:
        """Write the prompted frame into slot 0 of both buffers; it is never evicted."""
        for buffer, frames, value in self._tables(memory, obj_ptr):
            self._write(buffer, frames, 0, frame_index, value)

    def register_frame(self, frame_index: int, memory: Handle, obj_ptr: Handle) -> None:
        """Write a tracked frame over the oldest ring slot (index >= 1) of each buffer (FIFO eviction)."""
        for buffer, frames, value in self._tables(memory, obj_ptr):
            self._write(buffer, frames, 1 + choose_fifo_to_evict(frames[1:]), frame_index, value)

    def attention_inputs(self, frame_index: int) -> dict[str, np.ndarray]:
        """Validity masks and temporal ids of this object (no objects axis) for memory attention on
        `frame_index`.

        A ring slot counts only if its frame is at most N_max-1 (memory) or P_max-1 (pointers)
        frames back, as SAM 2 looks frames up by distance; the conditioning slot always counts.
        Memory ids index `maskmem_tpos_enc`: N_max-1 for the conditioning frame, d-1 for a frame
        d steps back. Pointer positions are signed frame distances.
        """
        geometry = self.backend.geometry
        memory_distance = frame_index - self.memory_frames
        ptr_distance = frame_index - self.ptr_frames
        memory_valid = _valid(self.memory_frames, memory_distance, geometry.num_maskmem - 1)
        ptr_valid = _valid(self.ptr_frames, ptr_distance, geometry.max_obj_ptrs - 1)
        memory_tpos = np.where(memory_valid, memory_distance - 1, 0)
        memory_tpos[0] = geometry.num_maskmem - 1
        return {
            "memory_tpos": memory_tpos.astype(np.int64),
            "memory_valid": memory_valid,
            "obj_ptr_tpos": np.where(ptr_valid, ptr_distance, 0).astype(np.int64),
            "obj_ptr_valid": ptr_valid,
        }


def new_memory_bank(backend: StageBackend) -> MemoryBank:
    """An empty bank bound to `backend`, its buffers shaped as memory_attention's for one object."""
    spec = stage_specs(backend.geometry)["memory_attention"]
    memory, ptrs = (spec.input(name).resolved({OBJECTS: 1}) for name in ("memory", "obj_ptrs"))
    return MemoryBank(backend, backend.zeros(memory), empty_frames(memory.shape[1]),
                      backend.zeros(ptrs), empty_frames(ptrs.shape[1]))


def _valid(frames: np.ndarray, distance: np.ndarray, max_distance: int) -> np.ndarray:
    filled = frames != EMPTY
    valid = filled & (distance >= 1) & (distance <= max_distance)
    valid[0] = filled[0] and distance[0] >= 0
    return valid
