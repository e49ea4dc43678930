"""Fixed memory slots: buffers preallocated inside the backend, the frame each slot holds on the host.

What both memory banks share (runtime/sam2/memory_bank.py: SAM 2's conditioning slot and ring of recent
frames; runtime/mqc/dami_memory.py: DAMI's anchor, FIFO and prototypes). A bank is bound to its
backend when it is made and decides itself which slot a frame overwrites (Cutie's
`MemoryManager`: memory decides how to store and evict, the step only whether), so the step
and the gates hand it a frame and nothing else. Nothing here grows with the video.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from mqc_edge.errors import ConfigError
from mqc_edge.runtime.backends.stage_backend import Handle, StageBackend

EMPTY = -1
"""Frame index of a slot that holds nothing yet."""


@dataclass
class SlotBank:
    """Memory and pointer slot buffers (backend handles) and the frame index each slot holds."""

    backend: StageBackend = field(repr=False, compare=False)  # owns the buffers; every write goes through it
    memory: Handle  # memory features: the slots behind any leading axes of size 1
    memory_frames: np.ndarray  # int64 [N]: frame index per memory slot, EMPTY if none
    obj_ptrs: Handle  # object pointers, slots as in `memory`
    ptr_frames: np.ndarray  # int64 [P]: frame index per pointer slot, EMPTY if none

    def _tables(self, memory: Handle, obj_ptr: Handle) -> tuple[tuple[Handle, np.ndarray, Handle], ...]:
        """(buffer, its frames, the value a write puts there) of the memory slots, then of the pointer slots."""
        return (self.memory, self.memory_frames, memory), (self.obj_ptrs, self.ptr_frames, obj_ptr)

    def _write(self, buffer: Handle, frames: np.ndarray, slot: int, frame_index: int, value: Handle) -> None:
        self.backend.write_slot(buffer, slot, value)
        frames[slot] = frame_index


def empty_frames(count: int) -> np.ndarray:
    """The frame table of `count` slots that hold nothing yet."""
    return np.full(count, EMPTY, np.int64)


def choose_fifo_to_evict(write_frames: Sequence[int]) -> int:
    """FIFO eviction: the slot to overwrite is an empty one (EMPTY) if any, else the oldest write."""
    frames = np.asarray(write_frames, dtype=np.int64)
    if frames.size == 0:
        raise ConfigError("FIFO eviction: expected at least 1 slot, got 0")
    empty = np.flatnonzero(frames == EMPTY)
    return int(empty[0]) if empty.size else int(np.argmin(frames))
