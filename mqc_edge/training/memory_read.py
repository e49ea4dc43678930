"""An auxiliary loss on memory attention's output: can a linear read of it find the tracked object?

Why (docs/model_card.md, "Memory identity, and a GPU path"): the tracked frames' masks of the
checkpoints before it overlap the object they track and the clip's other prompted objects alike
(`memory_probe.identity_iou`: 0.15 against 0.13-0.14), and two objects' memory attention outputs on
the same frame differ by about 3 % of their norm, no more at the objects than elsewhere. The memory
reaches the decoder through a chain of three untrained links (memory encoder, memory attention,
decoder), so the mask loss's gradient to the first two is small. This loss gives memory attention
its own: a 1 x 1 convolution (`MemoryReadHead`, trained with it, never shipped) reads memory
attention's output on each tracked frame and is scored against the object's cells of the feature
grid, class-balanced, and against the cells of the clip's other prompted objects, which content
alone cannot tell from the tracked one. With it (run I, 2,620 steps on 2 CPU cores) the identity
IoU rose to 0.279 against 0.035, zeroing the memory began to cost tracked J&F (0.475 -> 0.239), and
those weights became the shipped default.

    loss = (2 * balanced_bce(read, own cells) + mean BCE(read, 0) over the others' cells) / 3
           (balanced_bce alone on frames where no other object is in view)

A grid cell belongs to an object when the object covers more than 10 % of it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mqc_edge.training.losses import balanced_bce

CELL_COVER = 0.1
"""Share of a feature-grid cell an object must cover for the cell to count as the object's."""


class MemoryReadHead(nn.Module):
    """Memory attention's output `[N, hidden, h, w]` -> read logits `[N, h, w]` (a 1 x 1 convolution)."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.read = nn.Conv2d(hidden, 1, 1)

    def forward(self, conditioned: Tensor) -> Tensor:
        return self.read(conditioned)[:, 0]


def grid_cells(masks: Tensor, size: tuple[int, int]) -> Tensor:
    """Masks `[N, S, S]` in {0, 1} -> `[N, h, w]` in {0, 1}: the cells the masks cover > CELL_COVER of."""
    return (F.interpolate(masks[:, None], size=size, mode="area")[:, 0] > CELL_COVER).to(masks.dtype)


def memory_read_loss(head: MemoryReadHead, conditioned: Tensor, own: Tensor, others: Tensor) -> Tensor:
    """Per object and frame: conditioned `[N, hidden, h, w]`, own and others (the union of the other
    prompted objects of the same clip) masks `[N, S, S]` in {0, 1} -> `[N]` (module docstring)."""
    logits = head(conditioned)
    on = grid_cells(own, logits.shape[-2:])
    distractor = grid_cells(others, logits.shape[-2:]) * (1 - on)
    balanced = balanced_bce(logits[:, None], on[:, None])[:, 0]
    ce = F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="none")
    cells = distractor.flatten(1).sum(1)
    on_distractors = (ce * distractor).flatten(1).sum(1) / cells.clamp(min=1)
    return torch.where(cells > 0, (2 * balanced + on_distractors) / 3, balanced)
