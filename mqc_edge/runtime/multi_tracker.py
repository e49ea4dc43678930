"""Several objects on one video: the image encoder once per frame, the per-object stages batched.

DESIGN section 5 step 6. The image encoder's outputs do not depend on the prompt, and it is by
far the largest stage, so K objects cost one encoding plus the per-object stages (memory
attention, decoder, memory encoder; TMCC and the gates on the host). The objects are one
`Tracker`'s batch (`start_objects`, `step_objects`, `finish_objects`), each object with its own
state (memory bank, TMCC start-up, gate statistics), so K objects give the results of K separate
Trackers. In SAM 2 mode a tracking frame runs each per-object stage once for all K objects
(runtime/sam2/mode.py, the contract's `objects` dimension); the prompted frame and MQC mode
(DAMI's stage takes one object) run per object. A result's `timings_ms` are its object's share:
a stage run once for K objects counts 1/K of its time to each, so summing over the objects
gives the frame's stage times.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from mqc_edge.errors import PromptError
from mqc_edge.runtime.backends.stage_backend import StageBackend
from mqc_edge.runtime.config import TrackerConfig
from mqc_edge.runtime.results import FrameResult
from mqc_edge.runtime.text import TextTokenizer
from mqc_edge.runtime.tracker import Tracker

PROMPT_KEYS = ("text", "box", "points", "labels", "mask")
"""What one object's prompt may hold: the keyword arguments of `Tracker.start`."""


class MultiTracker:
    """One video, K objects; `start`, `step` and `finish` return one result list per object, in
    prompt order. Every object is in the same mode and TMCC window, so all emit the same frames."""

    def __init__(self, backend: StageBackend, config: TrackerConfig | None = None,
                 tokenizer: TextTokenizer | None = None,
                 text_cache: dict[str, dict[str, np.ndarray]] | None = None) -> None:
        self.tracker = Tracker(backend, config, tokenizer, text_cache)  # refuses a mode the model lacks now

    @property
    def started(self) -> bool:
        return self.tracker.started

    def start(self, frame0: np.ndarray, prompts: Sequence[Mapping[str, object]]) -> list[list[FrameResult]]:
        """Prompt every object on frame 0; `prompts[k]` holds object k's `Tracker.start` keywords."""
        if not prompts:
            raise PromptError("prompts: expected at least one object (a text, box, points or mask), got none")
        for number, prompt in enumerate(prompts, start=1):
            unknown = sorted(set(prompt) - set(PROMPT_KEYS))
            if unknown:
                raise PromptError(f"object {number} prompt: expected keys among {PROMPT_KEYS}, got {unknown}")
        return self.tracker.start_objects(frame0, prompts)

    def step(self, frame: np.ndarray) -> list[list[FrameResult]]:
        """Encode the frame once, then track every object on it (one batch in SAM 2 mode)."""
        return self.tracker.step_objects(frame)

    def finish(self) -> list[list[FrameResult]]:
        """End of the video: every object emits what it still holds back."""
        return self.tracker.finish_objects()
