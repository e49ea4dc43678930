"""S_robust: how trustworthy a frame's segmentation is, for the prototype-bank write gate.

MQC-SAM admits a frame seen under ambiguity into the prototype bank only when its robustness
score s_t = S_robust(features, confidence, area change) exceeds tau_reg (CroBIM-V, DAMI
write gating). The scorer is deliberately tiny: pooled image features plus a handful of
confidence statistics of the decoder logits and the relative area change, through an MLP.
"""

from __future__ import annotations

import torch
from torch import nn

NUM_CONFIDENCE_STATISTICS = 4


def confidence_statistics(mask_logits: torch.Tensor) -> torch.Tensor:
    """Mask logits `[B, 1, H, W]` -> `[B, 4]`: certainty, foreground confidence, area, uncertain share.

    certainty = mean |2p - 1| over the frame; foreground confidence = mean p over pixels with
    p > 0.5 (0 when none); area = share of pixels with p > 0.5; uncertain share = share of pixels
    with 0.25 < p < 0.75. All four are bounded and resolution-free, so the MLP sees the same
    ranges at any image size.
    """
    probs = mask_logits.sigmoid().flatten(1)
    certainty = (2 * probs - 1).abs()
    foreground = (probs > 0.5).to(probs.dtype)
    area = foreground.mean(dim=1)
    foreground_confidence = (probs * foreground).sum(dim=1) / foreground.sum(dim=1).clamp(min=1.0)
    uncertain = (certainty < 0.5).to(probs.dtype).mean(dim=1)
    return torch.stack([certainty.mean(dim=1), foreground_confidence, area, uncertain], dim=1)


class RobustnessScorer(nn.Module):
    """Pooled features `[B, C, h, w]`, mask logits, area change `[B]` -> s_t `[B]` in [0, 1]."""

    def __init__(self, feature_dim: int = 256, hidden_dim: int = 64) -> None:
        super().__init__()
        self.feature_norm = nn.LayerNorm(feature_dim)
        self.mlp = nn.Sequential(
            nn.Linear(feature_dim + NUM_CONFIDENCE_STATISTICS + 1, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, 1),
        )

    def forward(self, features: torch.Tensor, mask_logits: torch.Tensor, area_change: torch.Tensor) -> torch.Tensor:
        """`area_change` is |A_t - A_prev| / max(A_prev, 1) in pixels, computed by the caller's memory."""
        pooled = self.feature_norm(features.mean(dim=(2, 3)))
        inputs = torch.cat([pooled, confidence_statistics(mask_logits), area_change[:, None].to(pooled)], dim=1)
        return self.mlp(inputs).squeeze(1).sigmoid()
