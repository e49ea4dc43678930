"""Prompts in frame pixels -> prompt_encoder inputs, as Meta's add_new_points_or_box builds them."""

from __future__ import annotations

import numpy as np
import pytest

from mqc_edge.contract import ModelGeometry
from mqc_edge.errors import PromptError
from mqc_edge.runtime.prompts import PointPrompt, mask_prompt_input, point_prompt

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
