"""The streaming tracker: one object, one prompt on the first frame, results as they are ready.

Written once, torch-free, for every backend (DESIGN sections 3 and 5). In "sam2" mode it is
SAM 2's video inference (sam2_video_predictor.py `add_new_points_or_box` / `add_new_mask`,
`propagate_in_video`) with memory in fixed slots (runtime/memory.py, runtime/sam2_mode.py):
one result per call.
In "mqc" mode (runtime/mqc_mode.py) TMCC holds frame 0 back until its window is full, so
`start` and `step` return what is ready (possibly nothing) and `finish` flushes the rest.
The Tracker reads only small arrays from the backend: low-resolution logits, scores.
`start_encoded` / `step_encoded` take a frame already through the image encoder, so that
several objects share one encoding per frame (runtime/multi_tracker.py).
"""

from __future__ import annotations

import numpy as np

from mqc_edge.errors import BadFrameError, ConfigError, PromptError
from mqc_edge.runtime.backend import StageBackend
from mqc_edge.runtime.config import TrackerConfig
from mqc_edge.runtime.dami_memory import new_dami_bank
from mqc_edge.runtime.memory import new_memory_bank
from mqc_edge.runtime.mqc_mode import MQCState, flush_mqc, start_mqc, step_mqc
from mqc_edge.runtime.preprocess import check_frame
from mqc_edge.runtime.results import FrameResult
from mqc_edge.runtime.sam2_mode import TrackerState, step_sam2
from mqc_edge.runtime.stage_calls import EncodedFrame, StageCalls
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
        self.calls = StageCalls(backend, self.config)
        self.state: TrackerState | MQCState | None = None

    def start(self, frame0: np.ndarray, text: str | None = None, box: object = None, points: object = None,
              labels: object = None, mask: object = None) -> list[FrameResult]:
        """Segment the prompted frame (index 0) from a text, a box and/or points, or a mask. A text needs a
        model with MQC stages; in SAM 2 mode it starts SAM 2's memory (the ablation's 'SAM 2 memory only')."""
        check_frame(frame0, "0")
        return self.start_encoded(self.calls.encode_frame(frame0), text, box, points, labels, mask)

    def start_encoded(self, frame0: EncodedFrame, text: str | None = None, box: object = None, points: object = None,
                      labels: object = None, mask: object = None) -> list[FrameResult]:
        """`start` on a checked frame whose image_encoder outputs are computed (shared by several objects)."""
        frame_size = frame0.rgb.shape[:2]
        timings = dict(frame0.timings)
        features = frame0.features
        prompts = {"text": text, "box": box, "points": points, "labels": labels, "mask": mask}
        decoded = self.calls.decode_first_frame(features, frame_size, prompts, self.text_source, timings)
        tracking_prompt = self.calls.tracking_prompt(timings)
        if self.config.mode == "mqc":
            self.state = MQCState(0, frame_size, new_dami_bank(self.backend), tracking_prompt, pending=None)
            return start_mqc(self.calls, self.state, frame0.rgb, features, decoded, timings)
        mask_handle, lowres = self.calls.hole_filled(decoded["mask_lowres"])
        memory = self.calls.encode_memory(features, mask_handle, decoded["object_score"],
                                          self.config.binarize_prompted_memory, timings)
        bank = new_memory_bank(self.backend)
        bank.register_conditioning_frame(0, memory, decoded["obj_ptr"])
        self.state = TrackerState(0, frame_size, bank, tracking_prompt)
        return [self.calls.result(0, frame_size, lowres, decoded, timings)]

    def step(self, frame: np.ndarray) -> list[FrameResult]:
        """Take the next frame; return the frames whose results are ready (in order)."""
        self.check_next(frame)
        return self.step_encoded(self.calls.encode_frame(frame))

    def check_next(self, frame: np.ndarray) -> None:
        """The next frame must be uint8 RGB of the video's size: memory features are spatial."""
        state = self._started()
        index = state.next_index
        check_frame(frame, str(index))
        if frame.shape[:2] != state.frame_size:
            raise BadFrameError(f"frame {index}: expected size {state.frame_size}, got {frame.shape[:2]}")

    def step_encoded(self, frame: EncodedFrame) -> list[FrameResult]:
        """`step` on a frame that passed `check_next` and whose image_encoder outputs are computed."""
        state = self._started()
        if isinstance(state, MQCState):
            return step_mqc(self.calls, state, frame)
        return step_sam2(self.calls, [state], frame)

    def finish(self) -> list[FrameResult]:
        """End of the video: emit what is still held back (MQC start-up on a short video)."""
        state = self._started()
        return flush_mqc(self.calls, state) if isinstance(state, MQCState) else []

    def _started(self) -> TrackerState | MQCState:
        if self.state is None:
            raise PromptError("tracker: call start(frame0, text/box/points/mask) before step(frame)")
        return self.state
