"""DAMI: SAM 2 parity with one bank, exact masking, empty banks, trainable fusion weights and bias."""

from __future__ import annotations

import pytest
import torch

from mqc_edge.contract import MemorySplit
from mqc_edge.errors import ConfigError
from mqc_edge.model.dami import DAMIMemory, DAMIMemoryAttention, segmented_attention

HW = 64  # 8 x 8 query tokens (image size 128)


def _queries(batch: int = 1, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, HW, 256, generator=generator), torch.randn(batch, HW, 256, generator=generator)


def _sam2_reference(attention, curr, curr_pos, memory: DAMIMemory, slots: list[int], pointers: list[int]):
    """sam2's MemoryAttention on the given memory slots and pointer slots only, sequence-first."""
    seq_first = lambda x: x.transpose(0, 1)  # noqa: E731
    spatial = memory.features[:, slots].flatten(1, 2)
    spatial_pos = memory.pos[:, slots].flatten(1, 2)
    pointer_tokens = memory.pointers[:, pointers].flatten(1, 2)
    pointer_pos = memory.pointer_pos[:, pointers].flatten(1, 2)
    out = attention(
        curr=seq_first(curr),
        memory=seq_first(torch.cat([spatial, pointer_tokens], 1)),
        curr_pos=seq_first(curr_pos),
        memory_pos=seq_first(torch.cat([spatial_pos, pointer_pos], 1)),
        num_obj_ptr_tokens=pointer_tokens.shape[1],
    )
    return seq_first(out)


def _invalidate(memory: DAMIMemory, slots: list[int], fill: float, pointers: list[int] | None = None) -> DAMIMemory:
    """Mark memory slots and pointer slots (default: the same indices) invalid, content `fill`."""
    pointers = slots if pointers is None else pointers
    features, pointer_tokens = memory.features.clone(), memory.pointers.clone()
    slot_valid, pointer_valid = memory.slot_valid.clone(), memory.pointer_valid.clone()
    features[:, slots] = fill
    pointer_tokens[:, pointers] = fill
    slot_valid[:, slots] = False
    pointer_valid[:, pointers] = False
    return memory._replace(
        features=features, pointers=pointer_tokens, slot_valid=slot_valid, pointer_valid=pointer_valid
    )


@torch.no_grad()
def test_one_bank_holding_every_key_equals_sam2_memory_attention(tiny_sam, make_memory):
    # SAM 2.1's own capacity: 7 memory frames and 16 object pointers, all in one bank
    split = MemorySplit(
        anchor_slots=7, fifo_slots=0, prototype_slots=0, anchor_pointers=16, fifo_pointers=0, prototype_pointers=0
    )
    memory = make_memory(split, batch=2)
    curr, curr_pos = _queries(batch=2)
    reference = _sam2_reference(tiny_sam.memory_attention, curr, curr_pos, memory, list(range(7)), list(range(16)))
    dami = DAMIMemoryAttention(split)(tiny_sam.memory_attention, curr, curr_pos, memory)
    assert (dami - reference).abs().max() < 1e-4


@torch.no_grad()
def test_fifo_bank_alone_equals_sam2_on_those_slots(tiny_sam, make_memory):
    split = MemorySplit()  # 1 anchor, 4 FIFO, 2 prototypes
    memory = _invalidate(make_memory(split), [0, 5, 6], fill=3.0)
    curr, curr_pos = _queries()
    reference = _sam2_reference(tiny_sam.memory_attention, curr, curr_pos, memory, [1, 2, 3, 4], [1, 2, 3, 4])
    dami = DAMIMemoryAttention(split)(tiny_sam.memory_attention, curr, curr_pos, memory)
    assert (dami - reference).abs().max() < 1e-4


@torch.no_grad()
def test_masked_slots_equal_leaving_them_out(tiny_sam, make_memory):
    split = MemorySplit(
        anchor_slots=7, fifo_slots=0, prototype_slots=0, anchor_pointers=16, fifo_pointers=0, prototype_pointers=0
    )
    memory = _invalidate(make_memory(split), [2, 5], fill=0.0, pointers=[0, 9, 10, 15])
    curr, curr_pos = _queries()
    kept_pointers = [i for i in range(16) if i not in (0, 9, 10, 15)]
    reference = _sam2_reference(tiny_sam.memory_attention, curr, curr_pos, memory, [0, 1, 3, 4, 6], kept_pointers)
    dami = DAMIMemoryAttention(split)(tiny_sam.memory_attention, curr, curr_pos, memory)
    assert (dami - reference).abs().max() < 1e-4


@torch.no_grad()
@pytest.mark.parametrize("garbage", [1e4, float("nan"), float("inf")])
def test_garbage_in_a_masked_slot_changes_nothing(tiny_sam, make_memory, garbage):
    split = MemorySplit()
    base = make_memory(split)
    curr, curr_pos = _queries()
    dami = DAMIMemoryAttention(split)
    clean = dami(tiny_sam.memory_attention, curr, curr_pos, _invalidate(base, [3, 6], fill=0.0))
    dirty = dami(tiny_sam.memory_attention, curr, curr_pos, _invalidate(base, [3, 6], fill=garbage))
    assert torch.equal(clean, dirty)


@torch.no_grad()
def test_empty_bank_contributes_exactly_zero(tiny_sam, make_memory):
    split = MemorySplit()
    memory = _invalidate(make_memory(split), [5, 6], fill=float("nan"))  # both prototype slots
    curr, curr_pos = _queries()
    dami = DAMIMemoryAttention(split)
    before = dami(tiny_sam.memory_attention, curr, curr_pos, memory)
    dami.segment_weights[2] = 7.0  # w3 scales a bank that is empty
    after = dami(tiny_sam.memory_attention, curr, curr_pos, memory)
    assert torch.isfinite(before).all()
    assert torch.equal(before, after)


def test_gradients_reach_bank_weights_and_temporal_bias(tiny_sam, make_memory):
    split = MemorySplit()
    memory = make_memory(split)._replace(fifo_age=torch.tensor([[2, 0, 3, 1]]))
    curr, curr_pos = _queries()
    dami = DAMIMemoryAttention(split)
    dami(tiny_sam.memory_attention, curr, curr_pos, memory).square().mean().backward()
    assert torch.isfinite(dami.segment_weights.grad).all() and (dami.segment_weights.grad != 0).all()
    assert torch.isfinite(dami.fifo_bias.grad).all() and (dami.fifo_bias.grad != 0).all()
    tiny_sam.memory_attention.zero_grad(set_to_none=True)


@torch.no_grad()
def test_temporal_bias_acts_on_the_slot_of_that_age(tiny_sam, make_memory):
    split = MemorySplit()
    ages = torch.tensor([[2, 0, 3, 1]])
    memory = make_memory(split)._replace(fifo_age=ages, pointer_fifo_age=ages)
    curr, curr_pos = _queries()
    dami = DAMIMemoryAttention(split)
    dami.fifo_bias[3] = -1e4  # age 3 is FIFO slot 2, i.e. memory slot and pointer slot 1 + 2 = 3
    suppressed = dami(tiny_sam.memory_attention, curr, curr_pos, memory)
    dami.fifo_bias[3] = 0.0
    masked = dami(tiny_sam.memory_attention, curr, curr_pos, _invalidate(memory, [3], fill=0.0))
    assert (suppressed - masked).abs().max() < 1e-5


def _naive_segmented_attention(q, k, v, segment, valid, bias, weights):
    """Reference written from the DAMI formula: one softmax per segment over its valid keys."""
    out = torch.zeros_like(q)
    for b in range(q.shape[0]):
        for s in range(weights.shape[0]):
            keys = (segment == s) & valid[b]
            if keys.any():
                logits = q[b] @ k[b][:, keys].transpose(-1, -2) / q.shape[-1] ** 0.5 + bias[b, keys]
                out[b] += weights[s] * logits.softmax(-1) @ v[b][:, keys]
    return out


def test_segmented_attention_matches_the_formula():
    generator = torch.Generator().manual_seed(3)
    q = torch.randn(2, 2, 5, 8, generator=generator)
    k, v = torch.randn(2, 2, 11, 8, generator=generator), torch.randn(2, 2, 11, 8, generator=generator)
    lengths = (3, 5, 3)
    segment = torch.repeat_interleave(torch.arange(3), torch.tensor(lengths))
    valid = torch.rand(2, 11, generator=generator) > 0.3
    valid[1, segment == 2] = False  # an empty segment in the second batch item
    bias = torch.randn(2, 11, generator=generator) * 30  # large spreads: per-segment max matters
    weights = torch.tensor([0.5, 1.5, 2.0])
    out = segmented_attention(q, k, v, valid, bias, lengths, weights)
    expected = _naive_segmented_attention(q, k, v, segment, valid, bias, weights)
    assert torch.isfinite(out).all()
    assert (out - expected).abs().max() < 1e-5


def test_memory_split_rejects_an_empty_or_negative_memory():
    with pytest.raises(ConfigError, match=r"slots .* \(0, 0, 0\)"):
        MemorySplit(0, 0, 0)
    with pytest.raises(ConfigError, match=r"\(1, -1, 2\)"):
        MemorySplit(1, -1, 2)
    with pytest.raises(ConfigError, match=r"pointers \(1, 4, -2\)"):
        MemorySplit(prototype_pointers=-2)


@torch.no_grad()
@pytest.mark.parametrize("empty", [[], [5, 6]])  # all banks filled; the prototype bank empty
def test_folded_values_equal_projected_values_with_fusion_weights_and_bias(tiny_sam, make_memory, empty):
    split = MemorySplit()
    memory = _invalidate(make_memory(split, batch=2), empty, fill=0.0) if empty else make_memory(split, batch=2)
    curr, curr_pos = _queries(batch=2)
    dami = DAMIMemoryAttention(split)
    dami.segment_weights.copy_(torch.tensor([0.7, 1.3, 2.0]))  # unequal, so the bias weight is not 1
    dami.fifo_bias.copy_(torch.linspace(-0.5, 0.5, dami.fifo_bias.shape[0]))
    projected = dami(tiny_sam.memory_attention, curr, curr_pos, memory)
    dami.fold_values = True
    folded = dami(tiny_sam.memory_attention, curr, curr_pos, memory)
    assert (folded - projected).abs().max() <= 1e-5 * projected.abs().max()
    assert not torch.equal(folded, projected)  # the folded path really ran
