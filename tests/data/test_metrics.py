"""J, F, recall and decay on cases small enough to work out by hand (expected values derived in comments)."""

from __future__ import annotations

import numpy as np
import pytest

from mqc_edge.data.metrics import (
    boundary_f,
    boundary_map,
    boundary_tolerance,
    decay_bin_edges,
    disk,
    region_similarity,
    sequence_stats,
)


def square(shape: tuple[int, int], rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    """bool mask with rows[0]..rows[1] x cols[0]..cols[1] set, both ends included."""
    mask = np.zeros(shape, dtype=bool)
    mask[rows[0] : rows[1] + 1, cols[0] : cols[1] + 1] = True
    return mask


def test_region_similarity_hand_drawn() -> None:
    # GT rows 1..3 x cols 1..3 (9 px); prediction rows 2..4 x cols 2..4 (9 px).
    # Overlap rows 2..3 x cols 2..3 = 4 px; union 9 + 9 - 4 = 14; J = 4/14 = 2/7.
    gt = square((6, 6), (1, 3), (1, 3))
    pred = square((6, 6), (2, 4), (2, 4))
    assert region_similarity(pred, gt) == pytest.approx(2 / 7)


def test_empty_prediction_against_object_scores_zero() -> None:
    gt = square((10, 10), (2, 5), (2, 5))
    empty = np.zeros_like(gt)
    assert region_similarity(empty, gt) == 0.0
    # No predicted boundary against a real one: DAVIS sets P = 1, R = 0, so F = 0.
    assert boundary_f(empty, gt) == 0.0
    # A predicted boundary against no ground-truth boundary: P = 0, R = 1, F = 0.
    assert boundary_f(gt, empty) == 0.0


def test_both_empty_score_one() -> None:
    empty = np.zeros((10, 10), dtype=bool)
    assert region_similarity(empty, empty) == 1.0
    assert boundary_f(empty, empty) == 1.0


def test_identical_masks_score_one_at_every_tolerance() -> None:
    gt = square((20, 30), (3, 11), (4, 20))
    gt[6, 8] = False  # a hole, so the boundary is not a plain rectangle
    for tolerance in (None, 0, 1, 5):
        assert boundary_f(gt.copy(), gt, tolerance_px=tolerance) == 1.0
    assert region_similarity(gt.copy(), gt) == 1.0


def test_boundary_map_marks_pixels_that_differ_from_right_bottom_or_diagonal() -> None:
    # One foreground pixel at (1, 1): it differs from its right neighbour; (0, 1) from its
    # bottom one; (1, 0) from its right one; (0, 0) from its bottom-right one. Nothing else
    # touches it from the right, bottom or bottom-right.
    mask = np.zeros((3, 3), dtype=bool)
    mask[1, 1] = True
    expected = np.zeros((3, 3), dtype=bool)
    expected[0:2, 0:2] = True
    np.testing.assert_array_equal(boundary_map(mask), expected)


def test_image_border_is_not_a_boundary() -> None:
    # Foreground in the last column only: pixels there have no right neighbour, so only the
    # column left of it (whose right neighbour differs) is boundary.
    mask = np.zeros((4, 4), dtype=bool)
    mask[:, 3] = True
    expected = np.zeros((4, 4), dtype=bool)
    expected[:, 2] = True
    np.testing.assert_array_equal(boundary_map(mask), expected)
    assert not boundary_map(np.ones((4, 4), dtype=bool)).any()


def test_full_frame_masks_follow_davis_boundary_rules() -> None:
    # A mask covering the frame has no boundary. Full vs full: both boundary sets empty -> F 1.
    # Full GT vs top half: the prediction has a boundary, the GT none -> P 0, R 1 -> F 0,
    # although J is 0.5. DAVIS decides on boundary sets, not on mask emptiness.
    full = np.ones((8, 8), dtype=bool)
    half = square((8, 8), (0, 3), (0, 7))
    assert boundary_f(full, full) == 1.0
    assert boundary_f(half, full) == 0.0
    assert region_similarity(half, full) == 0.5


def test_one_pixel_shift_needs_a_tolerance_of_one_pixel() -> None:
    # GT square rows 2..5 x cols 2..5. Its boundary is the outline of the 5x5 box rows 1..5 x
    # cols 1..5 (the pixels just above and left of it, plus its own right column and bottom
    # row): 16 px. The prediction, shifted right by 1, has the outline of rows 1..5 x cols 2..6.
    # Tolerance 0: common pixels are the top and bottom rows at cols 2..5 = 8, the side
    # columns (1, 5) vs (2, 6) never meet: P = R = 8/16 = 0.5, F = 0.5.
    # Tolerance 1 (a cross): every pixel of one outline has a 4-neighbour on the other: F = 1.
    gt = square((10, 10), (2, 5), (2, 5))
    pred = square((10, 10), (2, 5), (3, 6))
    assert boundary_f(pred, gt, tolerance_px=0) == pytest.approx(0.5)
    assert boundary_f(pred, gt, tolerance_px=1) == 1.0
    # Default on a 10x10 image: ceil(0.008 * 14.14) = 1 px, so the same as tolerance 1.
    assert boundary_f(pred, gt) == 1.0


def test_two_pixel_shift_with_a_one_pixel_tolerance() -> None:
    # GT outline rows 1..5 x cols 1..5; prediction shifted right by 2: rows 1..5 x cols 3..7.
    # Prediction pixels within a 4-neighbour of the GT outline: top row cols 3, 4, 5 (on it)
    # and 6 (next to (1, 5)); same on the bottom row; left column (y, 3) for y = 2 and 4
    # (next to (1, 3) and (5, 3)), not y = 3; right column cols 7: none. 4 + 4 + 2 = 10 of 16.
    # Mirror argument for the GT outline: 10 of 16. P = R = 0.625, F = 0.625.
    gt = square((10, 10), (2, 5), (2, 5))
    pred = square((10, 10), (2, 5), (4, 7))
    assert boundary_f(pred, gt, tolerance_px=1) == pytest.approx(0.625)


def test_disk_is_the_euclidean_ball() -> None:
    # x^2 + y^2 <= 4: the centre, 4 at distance 1, 4 diagonals (2 <= 4), 4 at distance 2.
    kernel = disk(2)
    assert kernel.shape == (5, 5)
    assert kernel.sum() == 13
    assert kernel[0, 0] == 0 and kernel[0, 2] == 1 and kernel[1, 1] == 1
    np.testing.assert_array_equal(disk(0), np.ones((1, 1), dtype=np.uint8))


def test_boundary_tolerance_is_davis_fraction_of_the_diagonal() -> None:
    # 480x480: diagonal 678.8, * 0.008 = 5.43 -> 6. DAVIS 480p (480x854): 979.6 * 0.008 = 7.84 -> 8.
    assert boundary_tolerance((480, 480)) == 6
    assert boundary_tolerance((480, 854)) == 8


def test_masks_of_different_shape_are_refused() -> None:
    with pytest.raises(ValueError, match=r"\(4, 4\).*\(4, 5\)"):
        region_similarity(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="2-D"):
        boundary_f(np.zeros((2, 4, 4)), np.zeros((2, 4, 4)))


def test_large_masks_count_without_overflow() -> None:
    # 512x512 = 262144 px, more than uint8 or uint16 can count. Top half vs all: J = 1/2.
    full = np.ones((512, 512), dtype=np.uint8)
    top = np.zeros((512, 512), dtype=np.uint8)
    top[:256] = 1
    assert region_similarity(top, full) == 0.5


def test_sequence_stats_on_four_frames() -> None:
    # Edges k * (4 - 1) / 4 = 0, 0.75, 1.5, 2.25, 3 rounded half up: 0, 1, 2, 2, 3.
    # First bin frames 0..1 -> mean 0.75; last bin frames 2..3 -> mean 0; decay 0.75.
    # Recall: only 1.0 is above 0.5 (0.5 itself is not) -> 1/4.
    stats = sequence_stats(np.array([1.0, 0.5, 0.0, 0.0]))
    assert stats.mean == pytest.approx(0.375)
    assert stats.recall == pytest.approx(0.25)
    assert stats.decay == pytest.approx(0.75)


def test_decay_bins_share_edges_and_cover_short_series() -> None:
    # n = 8: k * 7 / 4 = 0, 1.75, 3.5, 5.25, 7 -> 0, 2, 4, 5, 7.
    np.testing.assert_array_equal(decay_bin_edges(8), [0, 2, 4, 5, 7])
    # n = 1: every bin is frame 0, so decay 0.
    single = sequence_stats(np.array([0.9]))
    assert (single.mean, single.recall, single.decay) == (pytest.approx(0.9), 1.0, 0.0)
    # n = 2: edges 0, 0.25, 0.5, 0.75, 1 -> 0, 0, 1, 1, 1: first bin frame 0, last frame 1.
    assert sequence_stats(np.array([0.8, 0.2])).decay == pytest.approx(0.6)


def test_sequence_longer_than_256_frames() -> None:
    # n = 300: k * 299 / 4 = 0, 74.75, 149.5, 224.25, 299 -> 0, 75, 150, 224, 299. An edge
    # stored as uint8 would wrap 299 to 43. Frames 0..75 score 1, frames 224..299 score 0,
    # the 148 frames between score 0.5: decay = 1 - 0 = 1 exactly, mean = (76 + 74) / 300.
    np.testing.assert_array_equal(decay_bin_edges(300), [0, 75, 150, 224, 299])
    values = np.full(300, 0.5)
    values[:76] = 1.0
    values[224:] = 0.0
    stats = sequence_stats(values)
    assert stats.decay == 1.0
    assert stats.mean == pytest.approx(150 / 300)
    assert stats.recall == pytest.approx(76 / 300)


def test_empty_series_is_refused() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        sequence_stats(np.array([]))
