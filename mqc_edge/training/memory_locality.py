"""A locality start for memory attention's cross-attention (ours; docs/model_card.md, "Memory curriculum").

SAM 2's memory attention reads memory through RoPE attention: query and key are rotated by their
(x, y) positions, so a component shared by every query and every key contributes
sum_i |c_i|^2 cos(theta_i * delta) to a query-key logit, largest at delta = 0 (the same place)
and falling with distance. Adding the same vector c to the query and key projection biases of
every layer's `cross_attn_image` gives that term weight |c|^2 from the first step: each query
reads the memory at and around its own position. A model whose memory read has settled on a
global average (the same output whatever the memory holds: measured on the checkpoint trained
before this, docs/model_card.md) then starts from a read that depends on where the target was;
training is free to move the biases again.
"""

from __future__ import annotations

import torch

from mqc_edge.errors import ConfigError

LOCALITY_SEED = 0
"""Seed of the direction of c: the start is reproducible from (checkpoint, magnitude)."""


def add_memory_locality(sam: torch.nn.Module, magnitude: float) -> torch.Tensor:
    """Add c (a seeded random direction, L2 norm `magnitude`) to the q and k projection biases of
    each memory-attention layer's cross-attention, in place. Returns c `[embedding_dim]`.
    Raises ConfigError for a magnitude <= 0."""
    if magnitude <= 0:
        raise ConfigError(f"memory-locality: expected a magnitude > 0, got {magnitude}")
    layers = [layer.cross_attn_image for layer in sam.memory_attention.layers]
    direction = torch.randn(layers[0].q_proj.bias.shape[0], generator=torch.Generator().manual_seed(LOCALITY_SEED))
    shift = direction / direction.norm() * magnitude
    with torch.no_grad():
        for attention in layers:
            attention.q_proj.bias += shift.to(attention.q_proj.bias)
            attention.k_proj.bias += shift.to(attention.k_proj.bias)
    return shift
