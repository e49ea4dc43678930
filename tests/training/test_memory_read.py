"""The memory-read loss: low when a read of memory attention's output finds the tracked object's
cells, high when it finds the clip's other objects (what content alone cannot tell apart)."""

from __future__ import annotations

import torch

from mqc_edge.training.losses import balanced_bce
from mqc_edge.training.memory_read import MemoryReadHead, grid_cells, memory_read_loss

SIZE, GRID = 64, 16


def _mask(y0: int, x0: int) -> torch.Tensor:
    mask = torch.zeros(SIZE, SIZE)
    mask[y0:y0 + 8, x0:x0 + 8] = 1
    return mask


def _reading(cells: torch.Tensor) -> tuple[MemoryReadHead, torch.Tensor]:
    """A head that reads channel 0, and features whose channel 0 is +10 on `cells`, -10 elsewhere."""
    head = MemoryReadHead(4)
    with torch.no_grad():
        head.read.weight.zero_()
        head.read.weight[0, 0] = 1.0
        head.read.bias.zero_()
    features = torch.zeros(1, 4, GRID, GRID)
    features[0, 0] = 20 * cells - 10
    return head, features


def test_reading_the_tracked_object_costs_little_and_reading_the_others_costs_much() -> None:
    own, others = _mask(8, 8)[None], _mask(40, 40)[None]
    head, right = _reading(grid_cells(own, (GRID, GRID))[0])
    _, wrong = _reading(grid_cells(others, (GRID, GRID))[0])
    assert memory_read_loss(head, right, own, others).item() < 0.01
    assert memory_read_loss(head, wrong, own, others).item() > 3.0


def test_without_other_objects_it_is_the_class_balanced_bce() -> None:
    own = _mask(8, 8)[None]
    head, features = _reading(torch.zeros(GRID, GRID))
    expected = balanced_bce(head(features)[:, None], grid_cells(own, (GRID, GRID))[:, None])[:, 0]
    torch.testing.assert_close(memory_read_loss(head, features, own, torch.zeros_like(own)), expected)
