"""The streaming tracker: K objects on one video (K >= 1), prompted on the first frame, results
as they are ready.

Written once, torch-free, for every backend (DESIGN sections 3 and 5). The mode is chosen once,
here, and both modes have the same verbs over the K objects' states (`start`, `step`, `flush`):
"sam2" (runtime/sam2/mode.py) is SAM 2's video inference (sam2_video_predictor.py
`add_new_points_or_box` / `add_new_mask`, `propagate_in_video`) with memory in fixed slots
(runtime/sam2/memory_bank.py), one result per call; "mqc" (runtime/mqc/mode.py) holds frame 0 back until
TMCC's window is full, so `start` and `step` return what is ready (possibly nothing) and
`finish` flushes the rest. The image encoder runs once per frame for all objects, since it does
not depend on the prompt. One object is a batch of one: `start` / `step` / `finish` are
`start_objects` / `step_objects` / `finish_objects` with one prompt (runtime/multi_tracker.py
calls the latter). With `config.encode_ahead` the next frame's image encoding overlaps this frame's
memory stages (runtime/encode_ahead.py) and every frame's results come one call later. The Tracker
reads only small arrays from the backend: low-resolution logits, scores.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from mqc_edge.errors import BadFrameError, ConfigError, PromptError
from mqc_edge.runtime.backends.stage_backend import StageBackend
from mqc_edge.runtime.config import TrackerConfig
from mqc_edge.runtime.encode_ahead import EncodeAhead
from mqc_edge.runtime.mqc.mode import MQCMode, MQCState
from mqc_edge.runtime.preprocess import check_frame
from mqc_edge.runtime.results import FrameResult
from mqc_edge.runtime.sam2.mode import SAM2Mode, SAM2State
from mqc_edge.runtime.stage_calls import StageCalls
from mqc_edge.runtime.text import TextSource, TextTokenizer


class Tracker:
    """Owns one video's state; `start` on the prompted frame, `step` per frame, `finish` at the end."""

    def __init__(self, backend: StageBackend, config: TrackerConfig | None = None,
                 tokenizer: TextTokenizer | None = None,
                 text_cache: dict[str, dict[str, np.ndarray]] | None = None) -> None:
        self.backend = backend
        self.config = config or TrackerConfig()
        self.geometry = backend.geometry
        self.text_source = TextSource(tokenizer, text_cache)
        if self.config.mode == "mqc" and self.geometry.mqc is None:
            raise ConfigError(
                "tracker mode 'mqc': the model has no MQC stages (text encoder, fusion, DAMI); "
                "a plain SAM 2.1 checkpoint runs mode 'sam2' only"
            )
        if self.config.frame_step and not hasattr(backend, "frame_step"):
            raise ConfigError(f"frame_step: this backend ({getattr(backend, 'description', type(backend).__name__)}) "
                              "has no captured frame step; the torch backend has one (a CUDA graph on CUDA)")
        if self.config.encode_ahead and not getattr(backend, "concurrent_stages", False):
            raise ConfigError(f"encode_ahead: this backend ({getattr(backend, 'description', type(backend).__name__)}) "
                              "does not run two stages at once; onnxruntime on the CPU does")
        self.calls = StageCalls(backend, self.config)
        self.ahead = EncodeAhead(self.calls) if self.config.encode_ahead else None
        self.mode = MQCMode(self.calls) if self.config.mode == "mqc" else SAM2Mode(self.calls)
        self.states: list[SAM2State] | list[MQCState] = []  # one per object, in prompt order

    @property
    def started(self) -> bool:
        return bool(self.states)

    @property
    def state(self) -> SAM2State | MQCState | None:
        """The object's state after `start` (the first object's after `start_objects`)."""
        return self.states[0] if self.states else None

    def start(self, frame0: np.ndarray, text: str | None = None, box: object = None, points: object = None,
              labels: object = None, mask: object = None) -> list[FrameResult]:
        """Segment the prompted frame (index 0) from a text, a box and/or points, or a mask. A text needs a
        model with MQC stages; in SAM 2 mode it starts SAM 2's memory (the ablation's 'SAM 2 memory only')."""
        prompt = {"text": text, "box": box, "points": points, "labels": labels, "mask": mask}
        return self.start_objects(frame0, [prompt])[0]

    def start_objects(self, frame0: np.ndarray, prompts: Sequence[Mapping[str, object]]) -> list[list[FrameResult]]:
        """`start` for K objects at once, `prompts[k]` holding object k's `start` keywords; one
        result list per object. Nothing changes unless every prompt is valid."""
        check_frame(frame0, "0")
        if self.ahead is not None:
            self.ahead.close()  # a new video: the last one's frame in flight is dropped
        encoded = self.calls.encode_frame(frame0, len(prompts))
        frame_size = frame0.shape[:2]
        timings = [dict(encoded.timings) for _ in prompts]
        decoded = [self.calls.decode_first_frame(encoded.features, frame_size, prompt, self.text_source, one)
                   for prompt, one in zip(prompts, timings)]
        self.states, results = self.mode.start(encoded, decoded, timings)
        return results

    def step(self, frame: np.ndarray) -> list[FrameResult]:
        """Take the next frame; return the frames whose results are ready (in order)."""
        self._one_object()
        return self.step_objects(frame)[0]

    def step_objects(self, frame: np.ndarray) -> list[list[FrameResult]]:
        """`step` for every object: one image encoding, then the mode's step over the K objects
        (with `config.frame_step`, both in the backend's captured step; with `config.encode_ahead`,
        this frame's encoding starts and the previous frame is segmented)."""
        self.check_next(frame)
        if self.config.frame_step:
            return self.mode.step_captured(self.states, frame)
        if self.ahead is not None:
            encoded = self.ahead.swap(frame, len(self.states))
            return [[] for _ in self.states] if encoded is None else self.mode.step(self.states, encoded)
        return self.mode.step(self.states, self.calls.encode_frame(frame, len(self.states)))

    def finish(self) -> list[FrameResult]:
        """End of the video: emit what is still held back (MQC start-up on a short video)."""
        self._one_object()
        return self.finish_objects()[0]

    def finish_objects(self) -> list[list[FrameResult]]:
        """`finish` for every object: the frame encoded ahead, if any, then what the mode holds back."""
        states = self._started()
        held = self.ahead.take() if self.ahead is not None else None
        stepped = [[] for _ in states] if held is None else self.mode.step(states, held)
        if self.ahead is not None:
            self.ahead.close()
        return [first + rest for first, rest in zip(stepped, self.mode.flush(states), strict=True)]

    def check_next(self, frame: np.ndarray) -> None:
        """The next frame must be uint8 RGB of the video's size: memory features are spatial."""
        state = self._started()[0]
        index = state.next_index + (1 if self.ahead is not None and self.ahead.holding else 0)
        check_frame(frame, str(index))
        if frame.shape[:2] != state.frame_size:
            raise BadFrameError(f"frame {index}: expected size {state.frame_size}, got {frame.shape[:2]}")

    def _started(self) -> list[SAM2State] | list[MQCState]:
        if not self.states:
            raise PromptError("tracker: call start(frame0, text/box/points/mask) before step(frame)")
        return self.states

    def _one_object(self) -> None:
        if len(self._started()) != 1:
            raise PromptError(f"tracker: started with {len(self.states)} objects; use step_objects / finish_objects")
