"""SAM 2's training losses for one object on one frame (sam2/training/loss_fns.py
`MultiStepMultiMasksAndIous`, defaults of its released training configs).

    loss = 20 * focal(mask) + 1 * dice(mask) + 1 * L1(IoU) + 1 * BCE(object score)

With several hypotheses (multimask output) only the one with the lowest focal+dice loss is
trained on the mask, while every hypothesis's IoU prediction is trained; mask and IoU terms
count only on frames where the object is visible.

An optional class-balanced BCE (not SAM 2's; weight 0 by default) averages the pixel BCE over the
target and over the background separately: an empty mask and a frame-filling one both cost
about ln 2 or more per class, so a network that cannot yet place the target is not paid for
emptying its masks, and every target pixel gets a gradient 1 / (2 |target|), however small the
target (docs/model_card.md, "Memory path alone, decoder frozen").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

FOCAL_WEIGHT, DICE_WEIGHT, IOU_WEIGHT, CLASS_WEIGHT = 20.0, 1.0, 1.0, 1.0
FOCAL_ALPHA, FOCAL_GAMMA = 0.25, 2.0


@dataclass(frozen=True)
class FrameLoss:
    """One frame's weighted loss terms (tensors with gradient)."""

    focal: torch.Tensor
    dice: torch.Tensor
    iou: torch.Tensor
    object_score: torch.Tensor
    focal_weight: float = FOCAL_WEIGHT
    balanced: torch.Tensor | float = 0.0
    balanced_weight: float = 0.0

    @property
    def total(self) -> torch.Tensor:
        return (self.focal_weight * self.focal + DICE_WEIGHT * self.dice + IOU_WEIGHT * self.iou
                + CLASS_WEIGHT * self.object_score + self.balanced_weight * self.balanced)


def sigmoid_focal(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean focal loss per hypothesis: logits, target `[..., K, H, W]` -> `[..., K]` (Lin et al., 2017)."""
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = prob * target + (1 - prob) * (1 - target)
    alpha_t = FOCAL_ALPHA * target + (1 - FOCAL_ALPHA) * (1 - target)
    return (alpha_t * ce * (1 - p_t) ** FOCAL_GAMMA).flatten(-2).mean(-1)


def dice(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Soft dice loss per hypothesis: `[..., K, H, W]` -> `[..., K]`."""
    prob = logits.sigmoid().flatten(-2)
    target = target.flatten(-2)
    return 1 - (2 * (prob * target).sum(-1) + 1) / (prob.sum(-1) + target.sum(-1) + 1)


def balanced_bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Class-balanced BCE per hypothesis, the mean over target pixels and the mean over background
    pixels averaged: `[..., K, H, W]` -> `[..., K]` (a class with no pixels counts 0)."""
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(-2)
    target = target.flatten(-2)
    on_target = (ce * target).sum(-1) / target.sum(-1).clamp(min=1)
    on_background = (ce * (1 - target)).sum(-1) / (1 - target).sum(-1).clamp(min=1)
    return 0.5 * (on_target + on_background)


def mask_iou(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """IoU of each thresholded hypothesis with the target: `[..., K, H, W]` -> `[..., K]` (no gradient)."""
    pred = (logits > 0).flatten(-2)
    truth = target.bool().flatten(-2)
    union = (pred | truth).sum(-1)
    return torch.where(union > 0, (pred & truth).sum(-1) / union.clamp(min=1), torch.ones_like(union, dtype=torch.float32))


def frame_loss(hypotheses: torch.Tensor, predicted_iou: torch.Tensor, object_score: torch.Tensor,
               target: torch.Tensor, focal_weight: float = FOCAL_WEIGHT, balanced_weight: float = 0.0) -> FrameLoss:
    """hypotheses `[K, H, W]` logits at the target's resolution, predicted_iou `[K]`, object_score
    a scalar logit, target `[H, W]` float in {0, 1}; `focal_weight` replaces SAM 2's 20 (a fresh
    decoder on 0.1-1.5 %-of-frame targets collapses to empty masks under it, docs/model_card.md);
    `balanced_weight` adds `balanced_bce` to the mask terms (0: SAM 2's loss)."""
    visible = target.any()
    targets = target.expand_as(hypotheses)
    focal, dice_loss = sigmoid_focal(hypotheses, targets), dice(hypotheses, targets)
    balanced = balanced_bce(hypotheses, targets) if balanced_weight else torch.zeros_like(focal)
    best = torch.argmin(focal_weight * focal + DICE_WEIGHT * dice_loss + balanced_weight * balanced).detach()
    true_iou = mask_iou(hypotheses.detach(), targets)
    iou_loss = F.l1_loss(predicted_iou, true_iou)
    present = visible.to(hypotheses.dtype)
    score_loss = F.binary_cross_entropy_with_logits(object_score.reshape(()), present)
    return FrameLoss(present * focal[best], present * dice_loss[best], present * iou_loss, score_loss, focal_weight,
                     present * balanced[best], balanced_weight)


def batch_frame_loss(hypotheses: torch.Tensor, predicted_iou: torch.Tensor, object_score: torch.Tensor,
                     target: torch.Tensor, focal_weight: float = FOCAL_WEIGHT,
                     balanced_weight: float = 0.0) -> torch.Tensor:
    """`frame_loss(...).total` of N objects at once: hypotheses `[N, K, H, W]`, predicted_iou
    `[N, K]`, object_score `[N]` logits, target `[N, H, W]` in {0, 1} -> `[N]` (the batched
    training step's loss, in a few kernels instead of a few per object; tested equal)."""
    visible = target.flatten(1).any(1)
    present = visible.to(hypotheses.dtype)
    targets = target[:, None].expand_as(hypotheses)
    focal, dice_loss = sigmoid_focal(hypotheses, targets), dice(hypotheses, targets)
    balanced = balanced_bce(hypotheses, targets) if balanced_weight else torch.zeros_like(focal)
    mask_terms = focal_weight * focal + DICE_WEIGHT * dice_loss + balanced_weight * balanced
    best = torch.argmin(mask_terms, dim=1, keepdim=True).detach()
    iou_loss = (predicted_iou - mask_iou(hypotheses.detach(), targets)).abs().mean(1)
    score_loss = F.binary_cross_entropy_with_logits(object_score, present, reduction="none")
    return present * (mask_terms.gather(1, best)[:, 0] + IOU_WEIGHT * iou_loss) + CLASS_WEIGHT * score_loss
