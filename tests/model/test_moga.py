"""MoGA adapters: zero-initialised they change nothing; trained they act per object, deterministically."""

from __future__ import annotations

import pytest
import torch

from mqc_edge.contract import MemorySplit
from mqc_edge.errors import ConfigError
from mqc_edge.model.dami import DAMIMemoryAttention
from mqc_edge.model.moga import MoGAAdapters


def _adapters(seed: int = 0) -> MoGAAdapters:
    torch.manual_seed(seed)
    # SAM 2.1 tiny: 4 layers, queries 256 wide, memory 64 wide, attention 256 wide, pointer 256
    return MoGAAdapters(num_layers=4, query_dim=256, memory_dim=64, inner_dim=256, pointer_dim=256).eval()


def _inputs(batch: int = 2):
    generator = torch.Generator().manual_seed(5)
    curr = torch.randn(batch, 64, 256, generator=generator)
    curr_pos = torch.randn(batch, 64, 256, generator=generator)
    pointer = torch.randn(batch, 256, generator=generator)
    return curr, curr_pos, pointer


@torch.no_grad()
def test_zero_initialised_adapters_leave_the_layer_unchanged(tiny_sam, make_memory):
    split = MemorySplit()
    dami = DAMIMemoryAttention(split)
    curr, curr_pos, pointer = _inputs()
    memory = make_memory(split, batch=2)
    plain = dami(tiny_sam.memory_attention, curr, curr_pos, memory)
    adapted = dami(tiny_sam.memory_attention, curr, curr_pos, memory, _adapters(), pointer)
    assert torch.equal(plain, adapted)


@torch.no_grad()
def test_trained_adapters_change_the_output_and_are_deterministic_at_inference(tiny_sam, make_memory):
    split = MemorySplit()
    dami = DAMIMemoryAttention(split)
    moga = _adapters()
    for bank in moga.banks.values():
        bank.up.normal_(std=0.05)
    curr, curr_pos, pointer = _inputs()
    memory = make_memory(split, batch=2)
    plain = dami(tiny_sam.memory_attention, curr, curr_pos, memory)
    first = dami(tiny_sam.memory_attention, curr, curr_pos, memory, moga, pointer)
    second = dami(tiny_sam.memory_attention, curr, curr_pos, memory, moga, pointer)
    assert (first - plain).abs().max() > 1e-3
    assert torch.equal(first, second)


def test_gates_are_a_distribution_per_object_and_noisy_only_in_training():
    moga = _adapters()
    _, _, pointer = _inputs(batch=2)
    gates = moga.gates(pointer)
    assert gates.shape == (2, 4)
    assert torch.allclose(gates.sum(-1), torch.ones(2))
    assert not torch.allclose(gates[0], gates[1])  # two objects, two mixtures
    moga.train()
    assert not torch.equal(moga.gates(pointer), moga.gates(pointer))


def test_gradients_reach_the_gate_and_the_components(tiny_sam, make_memory):
    split = MemorySplit()
    dami = DAMIMemoryAttention(split)
    moga = _adapters()
    with torch.no_grad():
        for bank in moga.banks.values():
            bank.up.normal_(std=0.05)
    curr, curr_pos, pointer = _inputs()
    out = dami(tiny_sam.memory_attention, curr, curr_pos, make_memory(split, batch=2), moga, pointer)
    out.square().mean().backward()
    assert moga.gate[0].weight.grad.abs().sum() > 0
    for name, bank in moga.banks.items():
        assert bank.up.grad.abs().sum() > 0, name
        assert bank.down.grad.abs().sum() > 0, name
    tiny_sam.memory_attention.zero_grad(set_to_none=True)


def test_model_with_moga_refuses_memory_attention_without_a_pointer(mqc_model, make_memory):
    split = mqc_model.config.memory_split
    curr, curr_pos, _ = _inputs(batch=1)
    with pytest.raises(ConfigError, match="object pointer"):
        mqc_model.attend_memory(curr, curr_pos, make_memory(split))
