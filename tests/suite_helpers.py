"""Helpers several test folders import (tests/ is on sys.path through the root conftest)."""

EXPRESSIONS = ("the white plane at the top-left", "the ship at the bottom", "the white plane at the top-left")
"""Texts precomputed by the session export (`--texts`); the duplicate checks de-duplication."""


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
