"""Encode-ahead: frame t+1's preprocess and image encoder run in a worker thread while frame t's
memory stages (memory attention, mask decoder, memory encoder, heads) run on the caller's.

The image encoder depends on the frame only, not on the memory, so the two can overlap; results
then come one frame later (the Tracker's `step` returns what is ready, as MQC start-up already
does) and `finish` segments the frame still held. On 2 CPU cores with one-thread onnxruntime
sessions this overlap beats giving both threads to every operator, since at 256 px intra-op
threads buy little (docs/benchmarks.md, "Encode-ahead"). One worker, one frame in flight: memory
stays bounded by one more set of image features. Torch-free.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from mqc_edge.runtime.stage_calls import EncodedFrame, StageCalls


class EncodeAhead:
    """One frame's encoding in flight on a worker thread; `swap` starts the next and hands back the last."""

    def __init__(self, calls: StageCalls) -> None:
        self.calls = calls
        self.worker: ThreadPoolExecutor | None = None
        self.pending: Future[EncodedFrame] | None = None

    @property
    def holding(self) -> bool:
        """Whether a frame was taken whose results have not been computed yet."""
        return self.pending is not None

    def swap(self, frame: np.ndarray, objects: int) -> EncodedFrame | None:
        """Start encoding `frame` (uint8 RGB [H, W, 3]) for `objects` objects; return the frame
        started before it, waited for (None on the first call). A backend error of that frame's
        encoding is raised here."""
        if self.worker is None:
            self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mqc-edge-encode-ahead")
        previous, self.pending = self.pending, self.worker.submit(self.calls.encode_frame, frame, objects)
        return None if previous is None else previous.result()

    def take(self) -> EncodedFrame | None:
        """The frame in flight, waited for (None when there is none); nothing is in flight after."""
        previous, self.pending = self.pending, None
        return None if previous is None else previous.result()

    def close(self) -> None:
        """Drop the frame in flight, if any, and stop the worker thread."""
        self.pending = None
        if self.worker is not None:
            self.worker.shutdown(wait=True)
            self.worker = None
