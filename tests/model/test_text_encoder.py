"""Frozen text encoder: offline load, fixed length, refusal of over-long text, masked pooling."""

from __future__ import annotations

import pytest
import torch

from mqc_edge.errors import CheckpointError, PromptError
from mqc_edge.model.text_encoder import TextEncoder, bundled_text_model_path


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    torch.manual_seed(0)
    return TextEncoder(max_tokens=16)


def test_bundled_model_is_a_local_bert_folder():
    folder = bundled_text_model_path()
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()


def test_tokens_have_the_fixed_length_and_mark_real_tokens(encoder):
    ids, mask = encoder.tokenize(["the ship at the bottom-right", "plane"])
    assert ids.shape == mask.shape == (2, 16)
    real = [len(encoder.tokenizer(text)["input_ids"]) for text in ["the ship at the bottom-right", "plane"]]
    assert mask.sum(dim=1).tolist() == real
    assert (ids[mask == 0] == encoder.tokenizer.pad_token_id).all()


def test_over_long_text_is_refused_with_its_length(encoder):
    text = "the small white car " * 5  # 20 words: more than 16 tokens
    needed = len(encoder.tokenizer(text)["input_ids"])
    with pytest.raises(PromptError, match=f"needs {needed} tokens.*at most 16"):
        encoder.tokenize([text])


@torch.no_grad()
def test_outputs_have_prompt_width_and_pool_over_real_tokens_only(encoder):
    out = encoder.encode(["the wide-bodied aircraft at the top-left", "ship"])
    assert out.tokens.shape == (2, 16, 256) and out.pooled.shape == (2, 256)
    assert out.attention_mask.dtype == torch.bool
    for row in range(2):
        expected = out.tokens[row][out.attention_mask[row]].mean(dim=0)
        assert torch.allclose(out.pooled[row], expected, atol=1e-6)


@torch.no_grad()
def test_padding_length_does_not_change_the_sentence_embedding(encoder):
    longer = TextEncoder(max_tokens=24)
    longer.projection.load_state_dict(encoder.projection.state_dict())
    short = encoder.encode(["a ship"]).pooled
    padded = longer.encode(["a ship"]).pooled
    assert (short - padded).abs().max() < 1e-4


def test_language_model_is_frozen_and_only_the_projection_trains(encoder):
    encoder.train()
    assert not encoder.language_model.training  # no dropout in the frozen model
    assert not any(p.requires_grad for p in encoder.language_model.parameters())
    out = encoder.encode(["a ship"])
    out.pooled.sum().backward()
    assert encoder.projection.weight.grad.abs().sum() > 0
    encoder.eval()
    encoder.zero_grad(set_to_none=True)


def test_missing_text_model_folder_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match=str(tmp_path)):
        TextEncoder(model_path=tmp_path)
