"""The box-token loss: text starts' fused sparse tokens pulled toward the target box's prompt tokens."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from mqc_edge.model.default_config import DEFAULT_MODEL_CONFIG
from mqc_edge.runtime.prompts import point_prompt
from mqc_edge.training.box_tokens import box_token_loss
from mqc_edge.training.clips import ClipSampling
from mqc_edge.training.trainer import Trainer, TrainConfig, step_clips

TINY = dataclasses.replace(DEFAULT_MODEL_CONFIG, image_size=64, max_text_tokens=16)
TEXT_ONLY = ClipSampling(frames=1, image_size=64, start_shares=(1.0, 0.0, 0.0), max_objects=3)


def test_the_loss_is_zero_on_the_corner_tokens_and_relative_to_their_scale() -> None:
    torch.manual_seed(0)
    box = torch.randn(2, 3, 8)  # two corners + one padding token
    assert torch.equal(box_token_loss(box[:, :2].clone(), box), torch.zeros(2))
    moved = box[:, :2] + 0.5
    loss = box_token_loss(moved, box)
    assert loss.shape == (2,) and bool((loss > 0).all())
    torch.testing.assert_close(box_token_loss(10 * moved, 10 * box), loss)  # the prompt encoder's scale drops out
    torch.testing.assert_close(box_token_loss(moved, box * torch.tensor([1.0, 1.0, 100.0])[:, None]), loss)  # padding unread


def test_a_box_with_fewer_tokens_or_another_width_is_refused_by_shape() -> None:
    with pytest.raises(ValueError, match=r"fused tokens \[1, 2, 8\] against box tokens \[1, 1, 8\]"):
        box_token_loss(torch.zeros(1, 2, 8), torch.zeros(1, 1, 8))
    with pytest.raises(ValueError, match="against box tokens"):
        box_token_loss(torch.zeros(1, 2, 8), torch.zeros(1, 3, 4))


def _trainer(tmp_path, weight: float) -> Trainer:
    torch.manual_seed(0)
    config = TrainConfig(steps=30, warmup_steps=1, learning_rate=3e-3, validate_every=0, sampling=TEXT_ONLY,
                         trainable=("fusion.", "text_encoder.projection"), box_token_weight=weight, clip_pool=1)
    trainer = Trainer(tmp_path, config, TINY)
    trainer.model.eval()
    return trainer


def _box_distance(trainer: Trainer, clip) -> torch.Tensor:
    """The box-token loss of every object of `clip`, measured here from the unroll's outputs."""
    outputs = trainer.unroller.objects(trainer._images(clip), [trainer._start("text", obj) for obj in clip.objects])
    size = (trainer.unroller.geometry.image_size,) * 2
    boxes = [trainer.unroller.prompt_embeddings(point_prompt(obj.box, None, None, size, trainer.unroller.geometry),
                                                trainer.device)[0] for obj in clip.objects]
    return box_token_loss(torch.cat([out[0].prompt_sparse for out in outputs]), torch.cat(boxes))


def test_the_trainer_adds_the_weighted_box_token_loss_to_text_starts_only(tmp_path) -> None:
    plain, weighted = _trainer(tmp_path / "plain", 0.0), _trainer(tmp_path / "weighted", 2.0)
    clip = step_clips(plain.config, 0)[0]
    assert clip.start == "text" and len(clip.objects) >= 2
    with torch.no_grad():
        difference = weighted._clip_losses(clip) - plain._clip_losses(clip)
        torch.testing.assert_close(difference, 2.0 * _box_distance(plain, clip), rtol=1e-4, atol=1e-6)
        box_clip = dataclasses.replace(clip, start="box")
        torch.testing.assert_close(weighted._clip_losses(box_clip), plain._clip_losses(box_clip))


def test_training_with_it_moves_the_fused_tokens_toward_the_box(tmp_path) -> None:
    trainer = _trainer(tmp_path, 5.0)
    clip = step_clips(trainer.config, 0)[0]
    with torch.no_grad():
        before = _box_distance(trainer, clip).mean()
    trainer.run(progress=False)
    trainer.model.eval()
    with torch.no_grad():
        after = _box_distance(trainer, clip).mean()
    assert after < 0.5 * before, (float(before), float(after))
