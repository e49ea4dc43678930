"""Precomputed text states (issue 17): the grammar's enumeration covers what scenes say, and the
file gives training what the live language model gives it."""

from __future__ import annotations

import pytest
import torch

from mqc_edge.data.synth.spec import CATEGORIES
from mqc_edge.data.synth.targets import CATEGORY_COLORS
from mqc_edge.errors import CheckpointError, ConfigError
from mqc_edge.model.text_encoder import TextEncoder
from mqc_edge.training.clips import ClipSampling, TextFeatureCache, sample_clip
from mqc_edge.training.text_states import TextStates, synthetic_expressions, write_text_states

TEXTS = ["the parked wide-bodied silver aircraft at the top-left", "the ship in the center",
         "the moving short green train on the right", "a phrase the grammar never says"]


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    torch.manual_seed(0)
    return TextEncoder(max_tokens=16)


@pytest.fixture(scope="module")
def states_file(encoder, tmp_path_factory) -> TextStates:
    path = tmp_path_factory.mktemp("states") / "text_states.safetensors"
    write_text_states(encoder, TEXTS, path)
    return TextStates(path)


def test_enumeration_holds_every_expression_scenes_produce() -> None:
    sampling = ClipSampling(frames=1, image_size=128, start_shares=(1.0, 0.0, 0.0), degraded_share=0.0)
    said = {obj.text for index in range(30) for obj in sample_clip(7, index, sampling).objects if obj.text}
    expressions = synthetic_expressions()
    assert len(said) >= 20
    assert said <= set(expressions)
    assert expressions == sorted(set(expressions))
    assert set(CATEGORY_COLORS) == set(CATEGORIES)


def test_states_from_the_file_project_like_the_live_language_model(encoder, states_file) -> None:
    live = TextFeatureCache(encoder)
    assert len(states_file) == len(TEXTS)
    for text in TEXTS:
        (hidden, mask), (stored_hidden, stored_mask) = live(text), states_file(text)
        assert stored_hidden.shape == hidden.shape and stored_hidden.dtype == hidden.dtype
        assert stored_mask.dtype == mask.dtype and torch.equal(stored_mask, mask)
        expected, got = encoder.project(hidden, mask), encoder.project(stored_hidden, stored_mask)
        real = mask.bool()
        torch.testing.assert_close(got.tokens[real], expected.tokens[real], rtol=1e-3, atol=1e-3 * expected.tokens.abs().max().item())
        torch.testing.assert_close(got.pooled, expected.pooled, rtol=1e-3, atol=1e-3 * expected.pooled.abs().max().item())
        assert torch.equal(got.attention_mask, expected.attention_mask)


def test_unknown_text_and_bad_file_are_named(states_file, tmp_path) -> None:
    with pytest.raises(ConfigError, match="the red bicycle") as caught:
        states_file("the red bicycle")
    assert str(states_file.path) in str(caught.value)
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"not a safetensors file")
    for path in (tmp_path / "absent.safetensors", corrupt):
        with pytest.raises(CheckpointError, match=path.name):
            TextStates(path)
