"""MQC stages on the torch backend, and MQC mode end to end with random weights.

The DAMI stage must ignore an empty slot exactly; the Tracker in mode "mqc" must start from a
text, run TMCC, keep its anchor, and stop writing the FIFO when the same frame repeats.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mqc_edge.contract import PROMPT_TOKENS
from mqc_edge.model.torch_backend import TorchBackend
from mqc_edge.runtime.config import TrackerConfig
from mqc_edge.runtime.text import TextTokenizer
from mqc_edge.runtime.mqc.tmcc import TMCCConfig
from mqc_edge.runtime.tracker import Tracker

HEIGHT, WIDTH = 96, 128
TEXT = "the bright ship in the middle"


@pytest.fixture(scope="module")
def backend(mqc_model) -> TorchBackend:
    """The session MQC-SAM (MoGA on, so the gating pointer input is wired too) as a stage backend."""
    return TorchBackend(mqc_model)


@pytest.fixture(scope="module")
def tokenizer(backend: TorchBackend) -> TextTokenizer:
    return TextTokenizer(backend.tokenizer_file, backend.geometry.mqc.text_tokens)


def _dami_inputs(backend: TorchBackend, fill: float) -> dict[str, torch.Tensor]:
    """Slots anchor, FIFO 0-1 and prototype 0 valid; every other slot invalid and full of `fill`."""
    spec = backend.specs["dami_attention"]
    generator = torch.Generator().manual_seed(4)
    inputs = {t.name: torch.randn(t.shape, generator=generator) for t in spec.inputs if t.dtype == "float32"}
    memory_valid = torch.tensor([True, True, True, False, False, True, False])
    ptr_valid = memory_valid.clone()
    inputs["memory"][~memory_valid] = fill
    inputs["obj_ptrs"][~ptr_valid] = fill
    return {
        **inputs,
        "memory_valid": memory_valid, "fifo_age": torch.tensor([1, 0, 0, 0]),
        "obj_ptr_tpos": torch.tensor([5, 2, 1, 0, 0, 3, 0]), "obj_ptr_valid": ptr_valid,
        "ptr_fifo_age": torch.tensor([1, 0, 0, 0]),
    }


def test_an_empty_dami_slot_changes_nothing(backend: TorchBackend) -> None:
    with_zeros = backend.run("dami_attention", _dami_inputs(backend, 0.0))["feat_conditioned"]
    with_nan = backend.run("dami_attention", _dami_inputs(backend, float("nan")))["feat_conditioned"]
    with_huge = backend.run("dami_attention", _dami_inputs(backend, 1e6))["feat_conditioned"]
    assert torch.isfinite(with_zeros).all()
    torch.testing.assert_close(with_nan, with_zeros, rtol=0, atol=0)
    torch.testing.assert_close(with_huge, with_zeros, rtol=0, atol=0)
    # a check that could fail: the same slot, once valid, does change the output
    filled = _dami_inputs(backend, 0.0)
    filled["memory_valid"] = torch.ones(7, dtype=torch.bool)
    assert (backend.run("dami_attention", filled)["feat_conditioned"] - with_zeros).abs().max() > 1e-4


def test_text_stages_give_prompts_the_decoder_takes(backend: TorchBackend, tokenizer: TextTokenizer) -> None:
    tokens = {name: torch.from_numpy(array) for name, array in tokenizer.encode(TEXT).items()}
    encoded = backend.run("text_encoder", tokens)
    assert encoded["text_mask"].sum() == tokens["attention_mask"].sum()
    feat = torch.randn(backend.specs["prompt_fusion"].input("feat_conditioned").shape)
    fused = backend.run("prompt_fusion", {"feat_conditioned": feat, "text_tokens": encoded["text_tokens"],
                                          "text_mask": encoded["text_mask"]})
    decoder_sparse = backend.specs["mask_decoder"].input("sparse_prompt")
    assert decoder_sparse.shape[1] == PROMPT_TOKENS
    decoder_sparse.check("mask_decoder", tuple(fused["sparse_prompt"].shape), "float32")
    # SAM's no-mask embedding is the dense prompt while the zero-initialised fusion residual is untrained
    no_mask = backend.model.sam.sam_prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
    torch.testing.assert_close(fused["dense_prompt"], no_mask.expand_as(fused["dense_prompt"]))


def _scene(steps: int, shift_px: int) -> list[np.ndarray]:
    """A textured bright block on textured ground, moving `shift_px` per frame to the right."""
    rng = np.random.default_rng(2)
    ground = rng.integers(40, 90, size=(HEIGHT, WIDTH + steps * shift_px, 3), dtype=np.uint8)
    block = rng.integers(180, 255, size=(24, 32, 3), dtype=np.uint8)
    frames = []
    for t in range(steps):
        frame = ground[:, : WIDTH].copy()
        x0 = 30 + t * shift_px
        frame[36:60, x0 : x0 + 32] = block
        frames.append(frame)
    return frames


def _run(tracker: Tracker, frames: list[np.ndarray], **prompt: object) -> list:
    results = tracker.start(frames[0], **prompt)
    for frame in frames[1:]:
        results += tracker.step(frame)
    return results + tracker.finish()


def test_mqc_tracker_runs_from_text_with_tmcc_and_a_fixed_anchor(backend, tokenizer) -> None:
    tracker = Tracker(backend, TrackerConfig(mode="mqc", tmcc=TMCCConfig(n0=2, dn=2, n_max=4)), tokenizer)
    results = _run(tracker, _scene(10, shift_px=3), text=TEXT)
    assert [r.frame_index for r in results] == list(range(10))
    first = results[0]
    assert "anchor" in first.flags and "tmcc_window" in first.quality
    assert {"tmcc_calibrated", "tmcc_stationary", "tmcc_rejected"} & set(first.flags)
    assert "text_encoder" in first.timings_ms and "prompt_fusion" in first.timings_ms
    for result in results:
        assert result.logits.shape == result.mask.shape == (HEIGHT, WIDTH)
        assert np.isfinite(result.logits).all()
    for result in results[1:]:
        assert {"dami_attention", "quality_head", "mask_decoder"} <= set(result.timings_ms)
        assert {"innovation", "ambiguity_kl", "robustness"} <= set(result.quality)
    bank = tracker.state.bank
    anchor, _ = backend.geometry.mqc.bank_slots("anchor")
    assert bank.memory_frames[anchor].tolist() == [0]


def test_a_stationary_target_keeps_r0_and_is_flagged(backend) -> None:
    tracker = Tracker(backend, TrackerConfig(mode="mqc", tmcc=TMCCConfig(n0=2, dn=2, n_max=4)))
    results = _run(tracker, _scene(6, shift_px=0), box=[30, 36, 62, 60])
    first = results[0]
    assert "tmcc_stationary" in first.flags
    np.testing.assert_array_equal(first.mask, first.logits > 0)


def test_repeating_one_frame_stops_fifo_writes(backend) -> None:
    """The innovation gate writes on change, not on repeats: a repeated frame moves f_hat towards
    itself, so its G shrinks below the running percentile once the warm-up (8 values) is over."""
    tracker = Tracker(backend, TrackerConfig(mode="mqc", tmcc=None))
    moving = _scene(5, shift_px=3)
    results = _run(tracker, moving + [moving[-1]] * 10, box=[30, 36, 62, 60])
    writes = ["fifo_write" in r.flags for r in results[1:]]
    assert all(writes[:4]), "moving frames must be written while the FIFO warms up"
    assert not any(writes[-5:]), f"repeats kept being written: {writes}"
