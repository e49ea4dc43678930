"""Precomputed text embeddings for known expressions (`mqc-edge export --texts`), torch-free.

An on-board runtime that only ever sees a fixed list of prompts needs neither the tokenizer
nor the BERT-family text encoder: the `text_encoder` stage's outputs are computed once, at
export, by the exported graph itself, and stored in one .npz keyed by text.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mqc_edge.atomic import write_atomically
from mqc_edge.contract import stage_specs
from mqc_edge.errors import ConfigError, PromptError
from mqc_edge.runtime.backends.stage_backend import StageBackend
from mqc_edge.runtime.text import TextTokenizer

TEXTS_KEY = "texts"
"""The .npz array of expressions; every other array is a text_encoder output, row i for text i."""


def read_expressions(path: Path) -> list[str]:
    """One expression per line; blank lines skipped, duplicates kept once (first wins)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--texts {path}: no such file")
    texts = list(dict.fromkeys(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()))
    if not texts:
        raise ConfigError(f"--texts {path}: expected one expression per line, the file has none")
    return texts


def write_text_embeddings(backend: StageBackend, tokenizer: TextTokenizer, texts: list[str], path: Path) -> str:
    """Run the text_encoder stage on every text and store its outputs; returns the file name."""
    spec = stage_specs(backend.geometry)["text_encoder"]
    rows = []
    for text in texts:
        inputs = {name: backend.from_host(array) for name, array in tokenizer.encode(text).items()}
        rows.append({name: backend.to_host(value) for name, value in backend.run("text_encoder", inputs).items()})
    arrays = {t.name: np.concatenate([row[t.name] for row in rows]) for t in spec.outputs}
    write_atomically(Path(path), lambda tmp: np.savez(tmp, **{TEXTS_KEY: np.array(texts)}, **arrays))
    return Path(path).name


def load_text_embeddings(path: Path) -> dict[str, dict[str, np.ndarray]]:
    """text -> the text_encoder stage's outputs for it, each with its batch axis of 1."""
    with np.load(Path(path), allow_pickle=False) as content:
        texts = [str(text) for text in content[TEXTS_KEY]]
        outputs = {name: content[name] for name in content.files if name != TEXTS_KEY}
    return {text: {name: array[i : i + 1] for name, array in outputs.items()} for i, text in enumerate(texts)}


def cached_embedding(cache: dict[str, dict[str, np.ndarray]], text: str) -> dict[str, np.ndarray]:
    """The stored embedding of `text`; PromptError lists what is stored when it is not."""
    if text not in cache:
        raise PromptError(f"text prompt {text!r}: not among the {len(cache)} precomputed texts {sorted(cache)[:5]}")
    return cache[text]
