"""Our runtime as a benchmark contestant: one pass over decoded frames, timed per step.

Frames are decoded before timing starts (Meta's predictor also decodes its whole clip in
`init_state`, which the report counts in its time to first mask, not per frame). The objects
are one `MultiTracker` (one object: a batch of one). A step's wall time is split into the stage
times the results report (each object's share, summed over the objects) and the rest: the
orchestration overhead (memory selection, gates, host reads) that the report shows on its own.
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

import numpy as np

from mqc_edge.benchmarks.contestant import ContestantRun
from mqc_edge.benchmarks.memory import resident_bytes
from mqc_edge.runtime.multi_tracker import MultiTracker
from mqc_edge.runtime.results import FrameResult

ORCHESTRATION = "orchestration"
"""Key of the per-frame overhead (step wall time minus the stage and pre/postprocess times)."""


def _record(run: ContestantRun, per_object: list[list[FrameResult]], wall_ms: float, syncs: int | None,
            overlapped: bool) -> None:
    """A step that emitted exactly one frame per object gives one per-frame sample; MQC start-up
    steps that emit several frames at once are counted in the time to first mask instead. With
    `overlapped` stages (encode-ahead) the stage times add up to more than the step, so there is no
    orchestration sample."""
    if any(len(results) != 1 for results in per_object):
        return
    timings: dict[str, float] = {}
    for results in per_object:
        for stage, ms in results[0].timings_ms.items():
            timings[stage] = timings.get(stage, 0.0) + ms
    run.frame_ms.append(wall_ms)
    for stage, ms in timings.items():
        run.stage_ms.setdefault(stage, []).append(ms)
    if not overlapped:
        run.stage_ms.setdefault(ORCHESTRATION, []).append(max(wall_ms - sum(timings.values()), 0.0))
    run.resident_bytes.append(resident_bytes())
    if syncs is not None:
        run.syncs.append(syncs)


def run_tracker(name: str, tracker: MultiTracker, frames: Sequence[np.ndarray], prompts: list[dict],
                sync_count: Callable[[], int] | None = None, overlapped: bool = False) -> ContestantRun:
    """Prompt frame 0, step through the rest, flush; per-frame samples from steady-state steps.
    `sync_count`: the backend's running count of host-device synchronisations, read around each step;
    `overlapped`: the tracker runs two stages at once (encode-ahead), so no orchestration is derived."""
    run = ContestantRun(name=name, first_mask_ms=0.0)
    started = time.perf_counter()
    results = tracker.start(frames[0], prompts)
    first_mask_seen = all(results)
    if first_mask_seen:
        run.first_mask_ms = (time.perf_counter() - started) * 1e3
    for frame in frames[1:]:
        syncs_before = sync_count() if sync_count else 0
        begin = time.perf_counter()
        results = tracker.step(frame)
        now = time.perf_counter()
        syncs = sync_count() - syncs_before if sync_count else None
        if all(results) and not first_mask_seen:
            run.first_mask_ms, first_mask_seen = (now - started) * 1e3, True
            continue
        _record(run, results, (now - begin) * 1e3, syncs, overlapped)
    if any(tracker.finish()) and not first_mask_seen:
        run.first_mask_ms = (time.perf_counter() - started) * 1e3
    return run
