"""The frame loss's class-balanced BCE: what it charges empty and frame-filling masks, that its
gradient reaches a small target, and that weight 0 is SAM 2's loss unchanged."""

from __future__ import annotations

import math

import pytest
import torch

from mqc_edge.training.losses import balanced_bce, batch_frame_loss, dice, frame_loss, sigmoid_focal


def _target() -> torch.Tensor:
    target = torch.zeros(64, 64)
    target[30:33, 30:33] = 1  # 9 of 4,096 pixels: a 0.2 %-of-frame target
    return target


def test_empty_and_full_masks_cost_more_than_a_half_right_one() -> None:
    target = _target()
    empty, full = torch.full((1, 64, 64), -8.0), torch.full((1, 64, 64), 8.0)
    right = torch.where(target.bool(), 8.0, -8.0)[None]
    uncertain = torch.zeros(1, 64, 64)  # logit 0 everywhere: ln 2 on both classes
    costs = {name: float(balanced_bce(logits, target[None])) for name, logits in
             (("empty", empty), ("full", full), ("right", right), ("uncertain", uncertain))}
    assert costs["empty"] > 3.9 and costs["full"] > 3.9  # one class wholly wrong: about 8 / 2
    assert math.isclose(costs["uncertain"], math.log(2), rel_tol=1e-6)
    assert costs["right"] < 1e-3
    # SAM 2's focal term, by contrast, prefers the empty mask by far: the collapse the balanced term prevents
    assert float(sigmoid_focal(empty, target[None])) < 0.01 * float(sigmoid_focal(full, target[None]))


def test_each_target_pixel_gets_a_gradient_of_one_over_twice_the_target() -> None:
    target = _target()
    logits = torch.full((1, 64, 64), -8.0, requires_grad=True)
    balanced_bce(logits, target[None]).sum().backward()
    on_target = logits.grad[0][target.bool()]
    assert torch.allclose(on_target, torch.full_like(on_target, -(1 - torch.sigmoid(torch.tensor(-8.0))) / 18))
    logits.grad = None
    dice(logits, target[None]).sum().backward()
    assert logits.grad[0][target.bool()].abs().max() < 2e-3 * on_target.abs().min()  # dice: about a thousandth


def test_weight_zero_is_sam2_s_loss_and_a_weight_adds_the_term() -> None:
    target = _target()
    torch.manual_seed(0)
    hypotheses, iou, score = torch.randn(3, 64, 64), torch.rand(3), torch.randn(())
    sam2 = frame_loss(hypotheses, iou, score, target, focal_weight=1.0)
    assert float(sam2.total) == float(frame_loss(hypotheses, iou, score, target, 1.0, balanced_weight=0.0).total)
    weighted = frame_loss(hypotheses, iou, score, target, 1.0, balanced_weight=2.0)
    assert float(weighted.balanced) > 0
    assert math.isclose(float(weighted.total), float(weighted.focal + weighted.dice + weighted.iou
                                                     + weighted.object_score + 2.0 * weighted.balanced), rel_tol=1e-6)


@pytest.mark.parametrize("hypotheses", [1, 3])
def test_the_batched_frame_loss_is_each_objects_frame_loss(hypotheses: int) -> None:
    torch.manual_seed(3)
    logits = 4 * torch.randn(5, hypotheses, 32, 32)
    ious, scores = torch.rand(5, hypotheses), torch.randn(5)
    targets = (torch.rand(5, 32, 32) > 0.9).float()
    targets[2] = 0  # an object out of view: no mask or IoU terms
    batched = batch_frame_loss(logits, ious, scores, targets, focal_weight=1.0, balanced_weight=0.5)
    each = torch.stack([frame_loss(logits[n], ious[n], scores[n].reshape(1, 1), targets[n], 1.0, 0.5).total
                        for n in range(5)])
    torch.testing.assert_close(batched, each, rtol=1e-6, atol=1e-6)
