"""The memory bank: preallocated slots inside the backend, bookkeeping on the host.

SAM 2's selection (sam2_base.py `_prepare_memory_conditioned_features`) in fixed slots:
memory slot 0 holds the conditioning (prompted) frame, slots 1..N_max-1 a FIFO ring of the
most recent frames; pointer slot 0 holds the conditioning frame's object pointer, slots
1..P_max-1 a FIFO ring of recent pointers. Registering a frame overwrites the oldest ring
slot, so memory never grows with video length (Meta's predictor keeps every frame).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mqc_edge.contract import OBJECTS, ModelGeometry, stage_specs
from mqc_edge.runtime.backend import Handle, StageBackend

EMPTY = -1
"""Frame index of a slot that holds nothing yet."""


@dataclass
class MemoryBank:
    """Slot buffers (backend handles) and the frame index each slot holds (host arrays)."""

    memory: Handle  # [1, N_max, mem_dim, h, w] memory features (a batch of one object)
    memory_frames: np.ndarray  # int64 [N_max]: frame index per memory slot, EMPTY if none
    obj_ptrs: Handle  # [1, P_max, hidden_dim] object pointers
    ptr_frames: np.ndarray  # int64 [P_max]: frame index per pointer slot, EMPTY if none


def new_memory_bank(backend: StageBackend) -> MemoryBank:
    """An empty bank whose buffers have the memory_attention stage's shapes for one object."""
    spec = stage_specs(backend.geometry)["memory_attention"]
    memory, ptrs = (spec.input(name).resolved({OBJECTS: 1}) for name in ("memory", "obj_ptrs"))
    return MemoryBank(
        memory=backend.zeros(memory),
        memory_frames=np.full(memory.shape[1], EMPTY, dtype=np.int64),
        obj_ptrs=backend.zeros(ptrs),
        ptr_frames=np.full(ptrs.shape[1], EMPTY, dtype=np.int64),
    )


def register_conditioning_frame(
    bank: MemoryBank, backend: StageBackend, frame_index: int, memory: Handle, obj_ptr: Handle
) -> None:
    """Write the prompted frame into slot 0 of both buffers; it is never evicted."""
    _write(backend, bank.memory, bank.memory_frames, 0, frame_index, memory)
    _write(backend, bank.obj_ptrs, bank.ptr_frames, 0, frame_index, obj_ptr)


def register_frame(bank: MemoryBank, backend: StageBackend, frame_index: int, memory: Handle, obj_ptr: Handle) -> None:
    """Write a tracked frame over the oldest ring slot of each buffer (FIFO eviction)."""
    _write(backend, bank.memory, bank.memory_frames, evict_oldest(bank.memory_frames), frame_index, memory)
    _write(backend, bank.obj_ptrs, bank.ptr_frames, evict_oldest(bank.ptr_frames), frame_index, obj_ptr)


def evict_oldest(frames: np.ndarray) -> int:
    """The ring slot (index >= 1) to overwrite next: an empty one, else the oldest frame."""
    ring = frames[1:]
    return 1 + int(np.argmin(ring))


def _write(
    backend: StageBackend, buffer: Handle, frames: np.ndarray, slot: int, frame_index: int, value: Handle
) -> None:
    backend.write_slot(buffer, slot, value)
    frames[slot] = frame_index


def attention_inputs(bank: MemoryBank, frame_index: int, geometry: ModelGeometry) -> dict[str, np.ndarray]:
    """Validity masks and temporal ids of one object (no objects axis) for memory attention on
    `frame_index`.

    A ring slot counts only if its frame is at most N_max-1 (memory) or P_max-1 (pointers)
    frames back, as SAM 2 looks frames up by distance; the conditioning slot always counts.
    Memory ids index `maskmem_tpos_enc`: N_max-1 for the conditioning frame, d-1 for a frame
    d steps back. Pointer positions are signed frame distances.
    """
    memory_distance = frame_index - bank.memory_frames
    ptr_distance = frame_index - bank.ptr_frames
    memory_valid = _valid(bank.memory_frames, memory_distance, geometry.num_maskmem - 1)
    ptr_valid = _valid(bank.ptr_frames, ptr_distance, geometry.max_obj_ptrs - 1)
    memory_tpos = np.where(memory_valid, memory_distance - 1, 0)
    memory_tpos[0] = geometry.num_maskmem - 1
    return {
        "memory_tpos": memory_tpos.astype(np.int64),
        "memory_valid": memory_valid,
        "obj_ptr_tpos": np.where(ptr_valid, ptr_distance, 0).astype(np.int64),
        "obj_ptr_valid": ptr_valid,
    }


def _valid(frames: np.ndarray, distance: np.ndarray, max_distance: int) -> np.ndarray:
    filled = frames != EMPTY
    valid = filled & (distance >= 1) & (distance <= max_distance)
    valid[0] = filled[0] and distance[0] >= 0
    return valid
