"""Postprocess on hand-made logits (the comparison with Meta's is in tests/model/test_sam2_parity.py)."""

from __future__ import annotations

import numpy as np
import pytest

from mqc_edge.runtime.postprocess import fill_holes, upsample_logits


def test_fill_holes_fills_small_background_components_only() -> None:
    logits = np.full((12, 12), 0.5, np.float32)
    logits[2, 2] = -1.0  # 1 px hole
    logits[5:8, 5:8] = -1.0  # 9 px: larger than 8
    logits[10, 0] = -1.0  # 1 px touching the border: SAM 2 fills it too
    filled = fill_holes(logits, 8)
    assert filled[2, 2] == np.float32(0.1) and filled[10, 0] == np.float32(0.1)
    assert (filled[5:8, 5:8] == -1.0).all()
    assert fill_holes(logits, 0) is logits


def test_diagonal_neighbours_join_one_component() -> None:
    logits = np.full((8, 8), 0.5, np.float32)
    for i in range(5):
        logits[1 + i, 1 + i] = -1.0  # 5 px diagonal line: one 8-connected component
    assert (fill_holes(logits, 4)[1:6, 1:6].diagonal() == -1.0).all()
    assert (fill_holes(logits, 5)[1:6, 1:6].diagonal() == np.float32(0.1)).all()


def test_upsample_preserves_constants_and_corners() -> None:
    constant = np.full((4, 4), -1024.0, np.float32)
    assert (upsample_logits(constant, 30, 17) == -1024.0).all()
    ramp = np.arange(16, dtype=np.float32).reshape(4, 4)
    up = upsample_logits(ramp, 8, 8)
    assert up.shape == (8, 8) and up[0, 0] == 0.0 and up[-1, -1] == 15.0


@pytest.mark.parametrize(("source", "target"), [((64, 64), (1080, 1920)), ((64, 64), (480, 640)),
                                                ((64, 64), (999, 1777)), ((120, 120), (1080, 1920)),
                                                ((64, 64), (129, 300)), ((64, 64), (100, 100))])
def test_upsample_is_bit_exact_with_torch_bilinear(source, target) -> None:
    """The predictor's F.interpolate(bilinear, align_corners=False) from the low-res masks (64 or 120
    px) to frame sizes, to the last bit (one band of output rows, a band and a row, many bands)."""
    torch = pytest.importorskip("torch", reason="torch is the reference here (dev extra)")
    import torch.nn.functional as F

    logits = np.random.default_rng(3).normal(0, 3, source).astype(np.float32)
    expected = F.interpolate(torch.from_numpy(logits)[None, None], size=target, mode="bilinear",
                             align_corners=False)[0, 0].numpy()
    assert np.array_equal(upsample_logits(logits, *target), expected)
