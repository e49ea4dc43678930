"""Prompt fusion and the frame-0 text path of MQC-SAM, end to end through SAM's mask decoder."""

from __future__ import annotations

import pytest
import torch

from mqc_edge.errors import BadFrameError, ConfigError, PromptError
from mqc_edge.model.fusion import PromptFusion


def _inputs(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    image = torch.randn(2, 256, 8, 8, generator=generator)
    pos = torch.randn(1, 256, 8, 8, generator=generator)
    text = torch.randn(2, 6, 256, generator=generator)
    mask = torch.tensor([[True] * 6, [True, True, True, False, False, False]])
    return image, pos, text, mask


def _trained_fusion() -> PromptFusion:
    """A fusion whose zero-initialised dense head has been moved, as training would."""
    torch.manual_seed(0)
    fusion = PromptFusion(num_sparse_tokens=3).eval()
    with torch.no_grad():
        fusion.to_dense.weight.normal_(std=0.02)
    return fusion


@torch.no_grad()
def test_prompt_shapes():
    image, pos, text, mask = _inputs()
    out = _trained_fusion()(image, pos, text, mask)
    assert out.sparse.shape == (2, 3, 256)
    assert out.dense.shape == (2, 256, 8, 8)


@torch.no_grad()
def test_untrained_dense_prompt_is_zero():
    image, pos, text, mask = _inputs()
    assert torch.equal(PromptFusion()(image, pos, text, mask).dense, torch.zeros(2, 256, 8, 8))


@torch.no_grad()
def test_padding_tokens_are_ignored():
    fusion = _trained_fusion()
    image, pos, text, mask = _inputs()
    garbage = text.clone()
    garbage[1, 3:] = 1e3
    clean, dirty = fusion(image, pos, text, mask), fusion(image, pos, garbage, mask)
    assert (clean.sparse - dirty.sparse).abs().max() < 1e-5
    assert (clean.dense - dirty.dense).abs().max() < 1e-5


@torch.no_grad()
def test_text_and_image_condition_each_other():
    fusion = _trained_fusion()
    image, pos, text, mask = _inputs()
    base = fusion(image, pos, text, mask)
    other_text = fusion(image, pos, torch.randn_like(text), mask)
    other_image = fusion(torch.randn_like(image), pos, text, mask)
    assert (base.dense - other_text.dense).abs().max() > 1e-3  # image tokens read the text
    assert (base.sparse - other_image.sparse).abs().max() > 1e-3  # text tokens read the image


@torch.no_grad()
def test_frame0_from_text_gives_decoder_outputs(mqc_model):
    size = mqc_model.config.image_size
    image = torch.randn(1, 3, size, size)
    out = mqc_model.segment_first_frame_from_text(image, ["the ship at the bottom-right", "a plane"])
    low = size // 4
    assert out.multimask_logits.shape == (2, 3, low, low)
    assert out.iou.shape == (2, 3) and out.object_score.shape == (2, 1)
    assert all(torch.isfinite(tensor).all() for tensor in out)
    assert (out.multimask_logits[0] - out.multimask_logits[1]).abs().max() > 0  # the text matters


def test_text_path_trains_end_to_end(mqc_model):
    size = mqc_model.config.image_size
    image = torch.randn(1, 3, size, size)
    mqc_model.segment_first_frame_from_text(image, "a plane").multimask_logits.square().mean().backward()
    assert mqc_model.text_encoder.projection.weight.grad.abs().sum() > 0
    assert mqc_model.fusion.to_sparse.weight.grad.abs().sum() > 0
    assert mqc_model.fusion.to_dense.weight.grad.abs().sum() > 0
    mqc_model.zero_grad(set_to_none=True)


@torch.no_grad()
def test_box_prompt_joins_the_text_prompt_and_untrained_dense_is_sams(mqc_model):
    features = torch.randn(1, 256, 8, 8)
    text = mqc_model.text_encoder.encode(["a plane"])
    box = torch.tensor([[10.0, 20.0, 60.0, 90.0]])
    text_sparse, text_dense = mqc_model.prompt_embeddings(features, text=text)
    box_sparse, box_dense = mqc_model.prompt_embeddings(features, box=box)
    both_sparse, _ = mqc_model.prompt_embeddings(features, text=text, box=box)
    assert torch.equal(both_sparse, torch.cat([text_sparse, box_sparse], dim=1))
    _, sam_dense = mqc_model.sam.sam_prompt_encoder(points=None, boxes=None, masks=None)
    assert torch.equal(text_dense, sam_dense) and torch.equal(box_dense, sam_dense)


def test_bad_prompts_and_frames_are_typed_errors(mqc_model):
    size = mqc_model.config.image_size
    features = torch.randn(1, 256, 8, 8)
    with pytest.raises(ConfigError, match="neither"):
        mqc_model.prompt_embeddings(features)
    with pytest.raises(PromptError, match=r"box prompt: expected shape \[1, 4\].*got \[1, 2\]"):
        mqc_model.prompt_embeddings(features, box=torch.zeros(1, 2))
    with pytest.raises(BadFrameError, match=rf"\[1, 3, {size}, {size}\], got \[1, 3, 64, 64\]"):
        mqc_model.segment_first_frame_from_text(torch.zeros(1, 3, 64, 64), "a plane")
    with pytest.raises(PromptError, match="at most 16"):
        mqc_model.segment_first_frame_from_text(torch.zeros(1, 3, size, size), "a very " * 20 + "plane")


@torch.no_grad()
def test_positional_values_let_the_text_read_where_the_image_content_is():
    """On a content-free image (every cell alike) the text reads the same value wherever it attends,
    unless the values carry the positions (`positional_values`)."""
    from mqc_edge.model.fusion import _CrossAttentionBlock

    torch.manual_seed(0)
    text = torch.randn(1, 4, 256)
    flat = torch.randn(1, 1, 256).expand(1, 64, 256)
    pos, other_pos = torch.randn(1, 64, 256), torch.randn(1, 64, 256)
    no_pos = torch.zeros_like(text)
    blind, seeing = _CrossAttentionBlock(256, 8, 2).eval(), _CrossAttentionBlock(256, 8, 2, positional_values=True).eval()
    seeing.load_state_dict(blind.state_dict())
    assert torch.allclose(blind(text, no_pos, flat, pos, None), blind(text, no_pos, flat, other_pos, None), atol=1e-5)
    assert (seeing(text, no_pos, flat, pos, None) - seeing(text, no_pos, flat, other_pos, None)).abs().max() > 1e-2
    image, image_pos, tokens, mask = _inputs()
    off, on = PromptFusion(num_layers=1), PromptFusion(num_layers=1, positional_values=True)
    on.load_state_dict(off.state_dict())  # no new parameters: the same weights read either way
    assert (off(image, image_pos, tokens, mask).sparse - on(image, image_pos, tokens, mask).sparse).abs().max() > 1e-3


def test_checkpoints_written_before_positional_values_read_as_off():
    import dataclasses
    import json

    from mqc_edge.model.default_config import DEFAULT_MODEL_CONFIG
    from mqc_edge.model.mqc_sam import MQCSAMConfig

    saved = json.loads(DEFAULT_MODEL_CONFIG.to_json())
    saved.pop("fusion_positional_values")
    assert MQCSAMConfig.from_json(json.dumps(saved), "old.safetensors").fusion_positional_values is False
    on = dataclasses.replace(DEFAULT_MODEL_CONFIG, fusion_positional_values=True)
    assert MQCSAMConfig.from_json(on.to_json(), "new.safetensors") == on
