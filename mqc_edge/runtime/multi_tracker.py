"""Several objects on one video: the image encoder once per frame, the per-object stages per object.

DESIGN section 5 step 6. The image encoder's outputs do not depend on the prompt, and it is by
far the largest stage, so K objects cost one encoding plus K times the per-object stages
(memory attention, decoder, memory encoder; TMCC and the gates on the host). Each object is a
`Tracker` of its own (memory bank, TMCC start-up, gate statistics): the orchestration is the
Tracker's, fed with the shared `EncodedFrame`, so K objects give exactly the results of K
separate Trackers. The contract's batch is 1, so the per-object stages run one call per object;
batching them over objects is a later optimisation (docs/architecture.md).
"""

from __future__ import annotations

from functools import partial
from typing import Mapping, Sequence

import numpy as np

from mqc_edge.errors import PromptError
from mqc_edge.runtime.backend import StageBackend
from mqc_edge.runtime.config import TrackerConfig
from mqc_edge.runtime.preprocess import check_frame
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
        self._new_object = partial(Tracker, backend, config, tokenizer, text_cache)
        self._new_object()  # refuses a mode the model lacks now, not at the first frame
        self.objects: list[Tracker] = []

    @property
    def started(self) -> bool:
        return bool(self.objects)

    def start(self, frame0: np.ndarray, prompts: Sequence[Mapping[str, object]]) -> list[list[FrameResult]]:
        """Prompt every object on frame 0; `prompts[k]` holds object k's `Tracker.start` keywords."""
        if not prompts:
            raise PromptError("prompts: expected at least one object (a text, box, points or mask), got none")
        for number, prompt in enumerate(prompts, start=1):
            unknown = sorted(set(prompt) - set(PROMPT_KEYS))
            if unknown:
                raise PromptError(f"object {number} prompt: expected keys among {PROMPT_KEYS}, got {unknown}")
        check_frame(frame0, "0")
        objects = [self._new_object() for _ in prompts]
        encoded = objects[0].calls.encode_frame(frame0)
        results = [tracker.start_encoded(encoded, **prompt) for tracker, prompt in zip(objects, prompts)]
        self.objects = objects
        return results

    def step(self, frame: np.ndarray) -> list[list[FrameResult]]:
        """Encode the frame once, then let every object track on it."""
        lead = self._started()[0]
        lead.check_next(frame)  # every object has received the same frames: one check serves all
        encoded = lead.calls.encode_frame(frame)
        return [tracker.step_encoded(encoded) for tracker in self.objects]

    def finish(self) -> list[list[FrameResult]]:
        """End of the video: every object emits what it still holds back."""
        return [tracker.finish() for tracker in self._started()]

    def _started(self) -> list[Tracker]:
        if not self.objects:
            raise PromptError("multi-tracker: call start(frame0, prompts) before step(frame)")
        return self.objects
