"""SAM 2 mode tracking steps, for one object or a batch of objects on the same frame.

One step is SAM 2's `track_step` on a frame after the prompted one: memory attention over the
object's slots, the decoder with the 'no point' tracking prompt, then the memory encoder on the
new mask, whose output replaces the oldest ring slot (runtime/memory.py). Several objects on
one frame run each stage once as a batch (the contract's `objects` dimension): their banks are
concatenated on the way in and the outputs split on the way out, so K objects give the results
of K single-object steps while the per-object stages pay their fixed costs once. A single
Tracker is the batch of one, with no copies (`concat` of one handle is that handle). Each
object's `timings_ms` get 1/K of a batched stage's time, so they add up to the frame's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mqc_edge.runtime.backend import Handle
from mqc_edge.runtime.memory import MemoryBank
from mqc_edge.runtime.results import FrameResult
from mqc_edge.runtime.stage_calls import EncodedFrame, StageCalls, Timings


@dataclass
class TrackerState:
    """Everything one video's SAM 2 mode tracking carries from frame to frame."""

    frame_index: int  # index of the last processed frame
    frame_size: tuple[int, int]  # (H, W) of the video
    bank: MemoryBank
    tracking_prompt: dict[str, Handle]  # sparse/dense prompts of a tracking frame (constant)

    @property
    def next_index(self) -> int:
        return self.frame_index + 1


def step_sam2(calls: StageCalls, states: list[TrackerState], frame: EncodedFrame) -> list[FrameResult]:
    """Segment the next frame for every object from its memory, then register each finite
    result in its memory. Every state must be at the same frame index."""
    index = states[0].next_index
    timings: Timings = {}
    conditioned = _attend_memory(calls, states, index, frame.features, timings)
    multimask = calls.config.multimask_for_tracking and calls.config.multimask(0)
    prompt = {name: calls.backend.concat([state.tracking_prompt[name] for state in states])
              for name in states[0].tracking_prompt}
    decoded = _split(calls, calls.decode(conditioned, frame.features, prompt, multimask, timings))
    lowres = [calls.hole_filled(one["mask_lowres"])[1] for one in decoded]
    finite = [bool(np.isfinite(low).all() and np.isfinite(calls.scalar(one["object_score"])))
              for low, one in zip(lowres, decoded)]
    _encode_and_register(calls, [(s, d) for s, d, ok in zip(states, decoded, finite) if ok], index, frame, timings)
    share = {**frame.timings, **{stage: ms / len(states) for stage, ms in timings.items()}}
    results = []
    for state, low, one, ok in zip(states, lowres, decoded, finite):
        state.frame_index = index
        flags = () if ok else ("nonfinite",)
        results.append(calls.result(index, state.frame_size, low, one, dict(share), flags=flags))
    return results


def _attend_memory(calls: StageCalls, states: list[TrackerState], index: int, features: dict[str, Handle],
                   timings: Timings) -> Handle:
    backend = calls.backend
    slots = [state.bank.attention_inputs(index) for state in states]
    return calls.run(
        "memory_attention", timings, feat=features["feat"],
        memory=backend.concat([state.bank.memory for state in states]),
        obj_ptrs=backend.concat([state.bank.obj_ptrs for state in states]),
        **{name: calls.host(np.stack([one[name] for one in slots])) for name in slots[0]},
    )["feat_conditioned"]


def _split(calls: StageCalls, batch: dict[str, Handle]) -> list[dict[str, Handle]]:
    """Batched stage outputs -> one dict of size-1 handles per object."""
    parts = {name: calls.backend.split(handle) for name, handle in batch.items()}
    return [dict(zip(parts, one)) for one in zip(*parts.values())]


def _encode_and_register(calls: StageCalls, tracked: list[tuple[TrackerState, dict[str, Handle]]], index: int,
                         frame: EncodedFrame, timings: Timings) -> None:
    """One memory encoder call for the objects whose result may enter memory (a non-finite
    result never does: it would poison every later frame)."""
    if not tracked:
        return
    backend = calls.backend
    memory = calls.encode_memory(
        frame.features, backend.concat([one["mask_lowres"] for _, one in tracked]),
        backend.concat([one["object_score"] for _, one in tracked]), False, timings,
    )
    for (state, one), new_memory in zip(tracked, backend.split(memory)):
        state.bank.register_frame(index, new_memory, one["obj_ptr"])
