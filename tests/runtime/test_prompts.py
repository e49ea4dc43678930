"""Prompts in frame pixels -> prompt_encoder inputs, as Meta's add_new_points_or_box builds them."""

from __future__ import annotations

import numpy as np
import pytest

from mqc_edge.contract import ModelGeometry
from mqc_edge.errors import PromptError
from mqc_edge.runtime.prompts import PointPrompt, check_prompts, mask_prompt_input, point_prompt

GEOMETRY = ModelGeometry(image_size=256)


def test_box_becomes_two_corner_points_before_clicks_plus_padding() -> None:
    prompt = point_prompt([32, 24, 160, 120], [[64, 48]], [0], (240, 320), GEOMETRY)
    assert prompt.labels.tolist() == [[2, 3, 0, -1]]
    assert prompt.num_points == 3
    expected = np.array([[32 / 320, 24 / 240], [160 / 320, 120 / 240], [64 / 320, 48 / 240], [0, 0]]) * 256
    np.testing.assert_allclose(prompt.coords[0], expected, rtol=1e-6)
    assert prompt.coords.dtype == np.float32 and prompt.labels.dtype == np.int32


def test_empty_prompt_is_only_padding_tokens() -> None:
    prompt = PointPrompt.empty(2)
    assert prompt.labels.tolist() == [[-1, -1]] and prompt.num_points == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "got none"),
        ({"box": [1, 2, 3]}, r"box prompt: expected \[x0, y0, x1, y1\]"),
        ({"points": [[1, 2]]}, "expected 1 labels for 1 points"),
        ({"points": [[1, 2]], "labels": [2]}, "expected 0 .* or 1"),
    ],
)
def test_bad_point_prompts_raise_prompt_error(kwargs: dict, message: str) -> None:
    args = {"box": None, "points": None, "labels": None} | kwargs
    with pytest.raises(PromptError, match=message):
        point_prompt(args["box"], args["points"], args["labels"], (240, 320), GEOMETRY)


def test_mask_prompt_must_match_the_frame_and_mark_something() -> None:
    with pytest.raises(PromptError, match=r"expected shape \[240, 320\].*got \[100, 100\]"):
        mask_prompt_input(np.ones((100, 100), bool), (240, 320), GEOMETRY)
    with pytest.raises(PromptError, match="empty"):
        mask_prompt_input(np.zeros((240, 320), bool), (240, 320), GEOMETRY)


def test_mask_at_model_size_passes_through_unresized() -> None:
    mask = np.zeros((256, 256), bool)
    mask[10:20, 30:33] = True
    out = mask_prompt_input(mask, (256, 256), GEOMETRY)
    assert out.shape == (1, 1, 256, 256) and out.dtype == np.float32
    np.testing.assert_array_equal(out[0, 0] > 0, mask)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"box": [float("nan"), 10, 60, 50]}, r"box prompt: expected finite x0 y0 x1 y1, got \[nan, 10.0, 60.0, 50"),
        ({"box": [0, 10, float("inf"), 50]}, r"box prompt: expected finite .* got \[0.0, 10.0, inf, 50.0\]"),
        ({"points": [[float("nan"), 5]], "labels": [1]}, r"point prompt: expected finite x, y, got \[\[nan, 5.0\]\]"),
        ({"points": [[3, -float("inf")]], "labels": [1]}, r"point prompt: expected finite x, y, got \[\[3.0, -inf\]\]"),
        ({"box": [60, 10, 20, 50]}, r"box prompt: expected x0 < x1 and y0 < y1, got \[60.0, 10.0, 20.0, 50.0\]"),
        ({"box": [10, 50, 60, 50]}, r"box prompt: expected x0 < x1 and y0 < y1, got \[10.0, 50.0, 60.0, 50.0\]"),
        ({"box": ["a", 1, 2, 3]}, r"box prompt: expected numbers, got \['a', 1, 2, 3\]"),
        ({"points": [[1, 2, 3]], "labels": [1]}, r"point prompt: expected \[N, 2\] x, y pairs, got shape \[1, 3\]"),
    ],
)
def test_non_finite_and_degenerate_values_are_prompt_errors_naming_the_value(kwargs: dict, message: str) -> None:
    args = {"box": None, "points": None, "labels": None} | kwargs
    with pytest.raises(PromptError, match=message):
        point_prompt(args["box"], args["points"], args["labels"], (240, 320), GEOMETRY)
    with pytest.raises(PromptError, match="object 2 " + message):
        check_prompts([{"box": [1, 2, 3, 4]}, kwargs])


def test_box_over_the_frame_edge_is_clipped_and_one_outside_it_refused() -> None:
    clipped = point_prompt([-40, 200, 400, 300], None, None, (240, 320), GEOMETRY)
    np.testing.assert_allclose(clipped.coords[0, :2], [[0, 200 / 240 * 256], [256, 256]], rtol=1e-6)
    with pytest.raises(PromptError, match=r"box prompt: \[400.0, 10.0, 500.0, 50.0\] lies outside the 320x240 frame"):
        point_prompt([400, 10, 500, 50], None, None, (240, 320), GEOMETRY)


def test_points_must_lie_in_the_frame_edges_included() -> None:
    edge = point_prompt(None, [[0, 0], [320, 240]], [1, 0], (240, 320), GEOMETRY)
    np.testing.assert_allclose(edge.coords[0, :2], [[0, 0], [256, 256]])
    with pytest.raises(PromptError, match=r"point prompt: \[321.0, 10.0\] lies outside the 320x240 frame"):
        point_prompt(None, [[5, 5], [321, 10]], [1, 1], (240, 320), GEOMETRY)
    with pytest.raises(PromptError, match=r"\[5.0, -1.0\] lies outside"):
        point_prompt(None, [[5, -1]], [1], (240, 320), GEOMETRY)


def test_mask_prompt_must_be_binary() -> None:
    mask = np.zeros((240, 320), np.float32)
    mask[10:20, 10:20] = 1
    np.testing.assert_array_equal(mask_prompt_input(mask.astype(np.uint8), (240, 320), GEOMETRY),
                                  mask_prompt_input(mask > 0, (240, 320), GEOMETRY))
    mask[0, 0] = np.nan
    with pytest.raises(PromptError, match="mask prompt: expected bool or 0/1 values, got float32 value nan"):
        mask_prompt_input(mask, (240, 320), GEOMETRY)
    with pytest.raises(PromptError, match=r"object 1 mask prompt: expected \[H, W\], got shape \[2, 2, 2\]"):
        check_prompts([{"mask": np.ones((2, 2, 2), bool)}])
