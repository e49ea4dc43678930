"""CroBIM-U's pixel-wise uncertainty of a referring mask: where the decoder's mask should not be trusted.

The head reads what the mask decoder already has at stride 4: the chosen mask's low-resolution
logits and the stride-4 high-resolution features fpn0 (the 32-channel map SAM's decoder
upsamples its mask through). Both are at the mask's own resolution, so the head sees the
boundary the decoder drew and the image edges around it without any resampling; the stride-16
conditioned features would be 4x too coarse for a boundary band a few pixels wide. Trained
(training/uncertainty.py) on the decoder's own errors: target = (thresholded mask != ground
truth), so u is the predicted probability that a pixel is wrong.
"""

from __future__ import annotations

import torch
from torch import nn

LOGIT_CLAMP = 20.0
"""Logits are clamped to +-20 before the head: SAM gives +-1e4 on empty outputs, and beyond
|x| = 20 the sigmoid is saturated (1 - 2e-9) anyway."""


def mask_channels(mask_logits: torch.Tensor) -> torch.Tensor:
    """Logits `[B, 1, h, w]` -> `[B, 2, h, w]`: foreground probability and the clamped logit / 20
    (bounded, resolution-free inputs: the margin from the threshold and its sign)."""
    clamped = mask_logits.clamp(-LOGIT_CLAMP, LOGIT_CLAMP)
    return torch.cat([torch.sigmoid(clamped), clamped / LOGIT_CLAMP], dim=1)


class UncertaintyHead(nn.Module):
    """fpn0 `[1 or B, C0, h, w]` + mask logits `[B, 1, h, w]` -> uncertainty `[B, 1, h, w]` in [0, 1].

    Two 3x3 convolutions (receptive field 5x5 low-res px = 20 input px) and a 1x1 output; with
    C0 = 32 and `hidden` = 16, 7.2 k parameters. fpn0 of one frame is shared by its objects
    (broadcast over B, as the mask decoder reads it).
    """

    def __init__(self, fpn0_channels: int = 32, hidden: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(fpn0_channels + 2, hidden, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden, hidden, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden, 1, 1),
        )

    def logits(self, fpn0: torch.Tensor, mask_logits: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid uncertainty `[B, 1, h, w]` (the training loss takes these)."""
        features = fpn0.expand(mask_logits.shape[0], -1, -1, -1)
        return self.net(torch.cat([features, mask_channels(mask_logits)], dim=1))

    def forward(self, fpn0: torch.Tensor, mask_logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(fpn0, mask_logits))
