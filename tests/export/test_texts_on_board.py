"""On board with precomputed texts: a known prompt needs neither tokenizer nor text encoder."""

import numpy as np
import pytest

from mqc_edge.errors import PromptError
from mqc_edge.runtime.config import TrackerConfig
from mqc_edge.runtime.model_source import load_model
from mqc_edge.runtime.tracker import Tracker

from suite_helpers import EXPRESSIONS, CountingBackend


def _frame(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (96, 128, 3), dtype=np.uint8)


def test_known_text_runs_from_the_cache_and_equals_the_tokenized_path(exported):
    source = load_model(exported[0], backend="onnxruntime", threads=1)
    assert source.text_cache is not None and EXPRESSIONS[0] in source.text_cache
    config = TrackerConfig(mode="mqc")
    on_board = CountingBackend(source.backend)
    from_cache = Tracker(on_board, config, tokenizer=None, text_cache=source.text_cache)
    tokenized = Tracker(source.backend, config, tokenizer=source.tokenizer)
    frames = [_frame(seed) for seed in range(3)]
    cached_results = from_cache.start(frames[0], text=EXPRESSIONS[0])
    tokenized_results = tokenized.start(frames[0], text=EXPRESSIONS[0])
    for frame in frames[1:]:
        cached_results += from_cache.step(frame)
        tokenized_results += tokenized.step(frame)
    cached_results += from_cache.finish()
    tokenized_results += tokenized.finish()
    assert "text_encoder" not in on_board.calls and on_board.calls["prompt_fusion"] == 1
    assert len(cached_results) == len(tokenized_results) == 3
    for ours, reference in zip(cached_results, tokenized_results):
        np.testing.assert_allclose(ours.logits, reference.logits, atol=1e-5)


def test_unknown_text_without_tokenizer_names_the_stored_texts(exported):
    source = load_model(exported[0], backend="onnxruntime", threads=1)
    tracker = Tracker(source.backend, TrackerConfig(mode="mqc"), tokenizer=None, text_cache=source.text_cache)
    with pytest.raises(PromptError, match="'the red car': not among the 2 precomputed texts"):
        tracker.start(_frame(0), text="the red car")
