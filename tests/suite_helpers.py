"""Helpers several test folders import (tests/ is on sys.path through the root conftest)."""

EXPRESSIONS = ("the white plane at the top-left", "the ship at the bottom", "the white plane at the top-left")
"""Texts precomputed by the session export (`--texts`); the duplicate checks de-duplication."""


def synth_dataset(root, videos: int, frames: int, size: int, seed: int):
    """`mqc-edge data synth` of `videos` x `frames` square `size` px frames into `root`; returns root."""
    from mqc_edge.cli import main

    assert main(["data", "synth", "--out", str(root), "--videos", str(videos), "--frames", str(frames),
                 "--size", f"{size}x{size}", "--seed", str(seed)]) == 0
    return root


def track_all(tracker, frames, prompts) -> list[list]:
    """Every object's FrameResults of a start/step/finish run of `tracker` (a MultiTracker or
    anything with its verbs) over `frames`."""
    per_object = tracker.start(frames[0], prompts)
    for frame in frames[1:]:
        for collected, new in zip(per_object, tracker.step(frame)):
            collected += new
    for collected, new in zip(per_object, tracker.finish()):
        collected += new
    return per_object


class CountingBackend:
    """Passes every call through to a real backend and counts the calls per stage."""

    def __init__(self, backend) -> None:
        self.inner, self.calls = backend, {}
        self.geometry = backend.geometry

    def run(self, stage, inputs):
        self.calls[stage] = self.calls.get(stage, 0) + 1
        return self.inner.run(stage, inputs)

    def __getattr__(self, name):
        return getattr(self.inner, name)
