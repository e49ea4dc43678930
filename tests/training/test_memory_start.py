"""The memory starts: the mask gain keeps an empty mask's memory and multiplies the mask's effect;
the locality start changes only the q/k biases, reproducibly, and makes a query read the memory at
its own position."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from mqc_edge.contract import OBJECTS, stage_specs
from mqc_edge.errors import ConfigError
from mqc_edge.model.default_config import DEFAULT_MODEL_CONFIG
from mqc_edge.model.mqc_sam import MQCSAM
from mqc_edge.training.memory_start import add_memory_locality, amplify_memory_mask
from mqc_edge.training.unroll import ClipUnroller

TINY = dataclasses.replace(DEFAULT_MODEL_CONFIG, image_size=128, max_text_tokens=16)


def _model(seed: int = 0) -> MQCSAM:
    torch.manual_seed(seed)
    return MQCSAM(TINY, text_model=False).eval()


def test_only_the_cross_attention_q_and_k_biases_move_by_one_shared_vector() -> None:
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    shift = add_memory_locality(model.sam, 8.0)
    assert float(shift.norm()) == pytest.approx(8.0)
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    layers = range(len(model.sam.memory_attention.layers))
    assert changed == {f"sam.memory_attention.layers.{i}.cross_attn_image.{p}_proj.bias" for i in layers for p in "qk"}
    for name in changed:
        torch.testing.assert_close(model.state_dict()[name] - before[name], shift, rtol=0, atol=1e-6)
    again = _model()
    assert torch.equal(add_memory_locality(again.sam, 8.0), shift)  # seeded: the same start every time
    with pytest.raises(ConfigError, match="memory-locality: expected a magnitude > 0"):
        add_memory_locality(again.sam, 0.0)


def _read_profile(model: MQCSAM) -> np.ndarray:
    """Change of memory attention's output, per query position, when one memory position (the
    grid's centre) is perturbed; queries without content (zero features), one valid memory."""
    attend = ClipUnroller(model).stages["memory_attention"]
    spec = stage_specs(ClipUnroller(model).geometry)["memory_attention"]
    shapes = {t.name: t.resolved({OBJECTS: 1}).shape for t in spec.inputs}
    feat = torch.zeros(shapes["feat"])
    memory = torch.randn(shapes["memory"], generator=torch.Generator().manual_seed(1))
    valid = torch.zeros(shapes["memory_valid"], dtype=torch.bool)
    valid[0, 0] = True
    inputs = dict(memory_tpos=torch.zeros(shapes["memory_tpos"], dtype=torch.int64), memory_valid=valid,
                  obj_ptrs=torch.zeros(shapes["obj_ptrs"]), obj_ptr_tpos=torch.zeros(shapes["obj_ptr_tpos"], dtype=torch.int64),
                  obj_ptr_valid=torch.zeros(shapes["obj_ptr_valid"], dtype=torch.bool))
    h, w = shapes["memory"][-2:]
    perturbed = memory.clone()
    perturbed[0, 0, :, h // 2, w // 2] += 5.0
    with torch.no_grad():
        base, moved = (attend(feat, m, **inputs) for m in (memory, perturbed))
    change = (moved - base).reshape(-1, h, w) if moved.dim() == 4 else (moved - base)[0].T.reshape(-1, h, w)
    return change.norm(dim=0).numpy()


def test_with_the_locality_start_a_query_reads_the_memory_at_its_own_position() -> None:
    """Without content, the perturbed memory position changes the output at that position far
    more than elsewhere once the start is applied; at random init the read is spread out."""
    plain = _read_profile(_model())
    local_model = _model()
    add_memory_locality(local_model.sam, 30.0)
    local = _read_profile(local_model)
    h, w = local.shape

    def peak_ratio(profile: np.ndarray) -> float:
        others = np.delete(profile.ravel(), (h // 2) * w + w // 2)
        return float(profile[h // 2, w // 2] / others.mean())

    assert peak_ratio(local) > 5.0 and peak_ratio(local) > 3.0 * peak_ratio(plain)


def test_the_mask_gain_multiplies_the_mask_s_effect_and_keeps_an_empty_mask_s_output() -> None:
    model = _model()
    downsampler = model.sam.memory_encoder.mask_downsampler
    size = TINY.image_size
    mask = torch.zeros(1, 1, size, size)
    mask[..., size // 4: size // 2, size // 4: size // 2] = 1.0
    with torch.no_grad():
        empty_before, mask_before = downsampler(torch.zeros_like(mask)), downsampler(mask)
        amplify_memory_mask(model.sam, 20.0)
        empty_after, mask_after = downsampler(torch.zeros_like(mask)), downsampler(mask)
    inner = (slice(None), slice(None), slice(1, -1), slice(1, -1))  # zero padding makes the border differ
    torch.testing.assert_close(empty_after[inner], empty_before[inner], rtol=0, atol=1e-4)
    torch.testing.assert_close((mask_after - empty_after)[inner], 20.0 * (mask_before - empty_before)[inner],
                               rtol=1e-4, atol=1e-4)
    assert float((mask_before - empty_before).abs().max()) > 0  # the mask does reach the output
    with pytest.raises(ConfigError, match="memory-mask-gain: expected a gain > 1"):
        amplify_memory_mask(model.sam, 1.0)
