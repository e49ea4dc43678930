"""Helpers several test folders import (tests/ is on sys.path through the root conftest)."""

EXPRESSIONS = ("the white plane at the top-left", "the ship at the bottom", "the white plane at the top-left")
"""Texts precomputed by the session export (`--texts`); the duplicate checks de-duplication."""


def synth_dataset(root, videos: int, frames: int, size: int, seed: int):
    """`mqc-edge data synth` of `videos` x `frames` square `size` px frames into `root`; returns root."""
    from mqc_edge.cli import main

    assert main(["data", "synth", "--out", str(root), "--videos", str(videos), "--frames", str(frames),
                 "--size", f"{size}x{size}", "--seed", str(seed)]) == 0
    return root


def drifting_blocks(count: int, seed: int, height: int = 96, width: int = 128):
    """`count` uint8 RGB frames: two bright blocks drifting 2 px a frame in opposite directions over
    textured ground (seeded), the first at rows 20-40, the second at rows 60-84."""
    import numpy as np

    ground = np.random.default_rng(seed).integers(30, 90, size=(height, width, 3), dtype=np.uint8)
    frames = []
    for t in range(count):
        frame = ground.copy()
        frame[20:40, 10 + 2 * t: 40 + 2 * t] = 230
        frame[60:84, 100 - 2 * t: 120 - 2 * t] = (40, 200, 220)
        frames.append(frame)
    return frames


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
