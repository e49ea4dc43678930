"""SAM 2 mode: the prompted frame and the tracking steps of K objects on one video (K >= 1).

`start` encodes each object's prompted frame into the conditioning slot of its memory
(SAM 2's `_run_memory_encoder` on the prompt's binarized mask). `step` is SAM 2's `track_step`
on a frame after the prompted one: memory attention over the object's slots, the decoder with
the 'no point' tracking prompt, then the memory encoder on the new mask, whose output replaces
the oldest ring slot (runtime/sam2/memory_bank.py). The K objects run each tracking stage once as a batch
(the contract's `objects` dimension): their banks are concatenated on the way in and the
outputs split on the way out, so K objects give the results of K single-object steps while the
per-object stages pay their fixed costs once. One object is the batch of one, with no copies
(`concat` of one handle is that handle). Each object's `timings_ms` get 1/K of a batched
stage's time, so they add up to the frame's. Nothing is held back: `flush` emits nothing.
`step_captured` is `step` with the image encoder and the four tracking stages in one replay of the
backend's captured frame step (`TrackerConfig.frame_step`; a CUDA graph on the torch backend).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from mqc_edge.contract import stage_specs
from mqc_edge.runtime.backends.stage_backend import CapturedFrameStep, Handle
from mqc_edge.runtime.sam2.memory_bank import MemoryBank, new_memory_bank
from mqc_edge.runtime.results import FrameResult
from mqc_edge.runtime.stage_calls import EncodedFrame, StageCalls, StateHeader, Timings


@dataclass
class SAM2State(StateHeader):
    """Everything one object's SAM 2 mode tracking carries from frame to frame."""

    bank: MemoryBank


class SAM2Mode:
    """The verbs of a mode (as `MQCMode`): `start`, `step`, `flush`, each over the K objects' states."""

    def __init__(self, calls: StageCalls) -> None:
        self.calls = calls
        self.captured: CapturedFrameStep | None = None  # the backend's frame step, with TrackerConfig.frame_step
        self.decoder_outputs = tuple(t.name for t in stage_specs(calls.geometry)["mask_decoder"].outputs)

    def start(self, frame0: EncodedFrame, decoded: list[dict[str, Handle]],
              timings: list[Timings]) -> tuple[list[SAM2State], list[list[FrameResult]]]:
        """The prompted frame (index 0) of each object, from its decoder outputs: the result, and
        its memory in the conditioning slot (from the binarized mask, as Meta's predictor)."""
        calls, frame_size = self.calls, frame0.rgb.shape[:2]
        states, results = [], []
        for one, one_timings in zip(decoded, timings):
            tracking_prompt = calls.tracking_prompt(one_timings)
            mask_handle, lowres = calls.hole_filled(one["mask_lowres"])
            memory = calls.encode_memory(frame0.features, mask_handle, one["object_score"],
                                         calls.config.binarize_prompted_memory, one_timings)
            bank = new_memory_bank(calls.backend)
            bank.register_conditioning_frame(0, memory, one["obj_ptr"])
            states.append(SAM2State(0, frame_size, tracking_prompt, bank))
            uncertainty = calls.uncertainty(frame0.features, mask_handle, one_timings)
            results.append([calls.result(0, frame_size, lowres, one, one_timings, uncertainty=uncertainty)])
        return states, results

    def step(self, states: list[SAM2State], frame: EncodedFrame) -> list[list[FrameResult]]:
        """Segment the next frame for every object from its memory, then register each finite
        result in its memory. Every state is at the same frame index."""
        calls = self.calls
        timings: Timings = {}
        conditioned = _attend_memory(calls, states, states[0].next_index, frame.features, timings)
        decoded = calls.decode(conditioned, frame.features, _tracking_prompt(calls, states), _multimask(calls), timings)
        return self._conclude(states, frame, decoded, None, timings)

    def step_captured(self, states: list[SAM2State], rgb: np.ndarray) -> list[list[FrameResult]]:
        """`step` through the backend's `CapturedFrameStep` (captured on the first call for these
        K objects): image encoder, memory attention, decoder and memory encoder in one replay, the
        new memory computed for every object and registered for the finite ones, as `step` does.
        Timings: `preprocess` and `frame_step` (the replay: on CUDA its launch, the wait falls on
        the first read)."""
        calls, index = self.calls, states[0].next_index
        if self.captured is None:
            self.captured = calls.backend.frame_step(len(states))
        timings: Timings = {}
        begin = time.perf_counter()
        image = calls.backend.preprocess(rgb, calls.geometry.image_size)
        preprocess_ms = 1e3 * (time.perf_counter() - begin)
        begin = time.perf_counter()
        outputs = self.captured.replay(_frame_step_inputs(calls, states, index, image))
        timings["frame_step"] = 1e3 * (time.perf_counter() - begin)
        features = {name: outputs[name] for name in ("fpn0", "fpn1", "feat")}
        frame = EncodedFrame(rgb, features, {"preprocess": preprocess_ms / len(states)})
        decoded = {name: outputs[name] for name in self.decoder_outputs}
        return self._conclude(states, frame, decoded, outputs["memory"], timings)

    def _conclude(self, states: list[SAM2State], frame: EncodedFrame, decoded_batch: dict[str, Handle],
                  memory_batch: Handle | None, timings: Timings) -> list[list[FrameResult]]:
        """Hole filling, the finite check, memory registration (from `memory_batch` when the
        step computed it, else one memory encoder call) and the results."""
        calls, index = self.calls, states[0].next_index
        decoded = _split(calls, decoded_batch)
        filled = [calls.hole_filled(one["mask_lowres"]) for one in decoded]
        finite = [bool(np.isfinite(low).all() and np.isfinite(calls.scalar(one["object_score"])))
                  for (_, low), one in zip(filled, decoded)]
        if memory_batch is None:
            tracked = [(state, one) for state, one, ok in zip(states, decoded, finite) if ok]
            _encode_and_register(calls, tracked, index, frame, timings)
        else:
            for state, one, memory, ok in zip(states, decoded, calls.backend.split(memory_batch), finite):
                if ok:
                    state.bank.register_frame(index, memory, one["obj_ptr"])
        share = {**frame.timings, **{stage: ms / len(states) for stage, ms in timings.items()}}
        results = []
        for state, (handle, low), one, ok in zip(states, filled, decoded, finite):
            state.frame_index = index
            flags = () if ok else ("nonfinite",)
            one_timings = dict(share)
            uncertainty = calls.uncertainty(frame.features, handle, one_timings) if ok else None
            results.append([calls.result(index, state.frame_size, low, one, one_timings, uncertainty=uncertainty,
                                         flags=flags)])
        return results

    def flush(self, states: list[SAM2State]) -> list[list[FrameResult]]:
        """End of the video: every frame was emitted when it came."""
        return [[] for _ in states]


def _attend_memory(calls: StageCalls, states: list[SAM2State], index: int, features: dict[str, Handle],
                   timings: Timings) -> Handle:
    backend = calls.backend
    slots = [state.bank.attention_inputs(index) for state in states]
    return calls.run(
        "memory_attention", timings, feat=features["feat"],
        memory=backend.concat([state.bank.memory for state in states]),
        obj_ptrs=backend.concat([state.bank.obj_ptrs for state in states]),
        **{name: calls.host(np.stack([one[name] for one in slots])) for name in slots[0]},
    )["feat_conditioned"]


def _frame_step_inputs(calls: StageCalls, states: list[SAM2State], index: int, image: Handle) -> dict[str, Handle]:
    """What a captured frame step reads that no stage of it makes: the image, the K objects' banks
    with their slot masks and ids, the tracking prompts and the two flags (contract names)."""
    slots = [state.bank.attention_inputs(index) for state in states]
    return {
        "image": image, "binarize": calls.flag(False), "multimask": calls.flag(_multimask(calls)),
        "memory": calls.backend.concat([state.bank.memory for state in states]),
        "obj_ptrs": calls.backend.concat([state.bank.obj_ptrs for state in states]),
        **{name: calls.host(np.stack([one[name] for one in slots])) for name in slots[0]},
        **_tracking_prompt(calls, states),
    }


def _multimask(calls: StageCalls) -> bool:
    return calls.config.multimask_for_tracking and calls.config.multimask(0)


def _tracking_prompt(calls: StageCalls, states: list[SAM2State]) -> dict[str, Handle]:
    return {name: calls.backend.concat([state.tracking_prompt[name] for state in states])
            for name in states[0].tracking_prompt}


def _split(calls: StageCalls, batch: dict[str, Handle]) -> list[dict[str, Handle]]:
    """Batched stage outputs -> one dict of size-1 handles per object."""
    parts = {name: calls.backend.split(handle) for name, handle in batch.items()}
    return [dict(zip(parts, one)) for one in zip(*parts.values())]


def _encode_and_register(calls: StageCalls, tracked: list[tuple[SAM2State, dict[str, Handle]]], index: int,
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
