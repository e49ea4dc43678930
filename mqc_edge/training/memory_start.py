"""Starts that make the memory path carry the target (ours; docs/model_card.md, "Memory curriculum").

Measured on the checkpoint these were made for (docs/model_card.md): its memory encoder's mask
path adds 0.3-0.5 (L2 per location) where the target is, to image features of norm 60-80, so a
memory barely says where the target was; and its memory read is a global average. Two starts,
each applied once at step 0 and free to move in training:

Mask gain (`amplify_memory_mask`). The memory encoder adds its mask downsampler's output to the
projected image features. The downsampler's last 1x1 convolution is rescaled so that its output
for an empty mask stays what it was and its response to the mask is G times larger: W' = G W,
b' = b - (G - 1) W h0, h0 its input for an empty mask (inside the frame).

Locality (`add_memory_locality`). SAM 2's memory attention reads memory through RoPE attention:
query and key are rotated by their (x, y) positions, so a component shared by every query and
every key contributes
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


def amplify_memory_mask(sam: torch.nn.Module, gain: float) -> None:
    """Multiply the memory encoder's response to the mask by `gain`, its output for an empty mask
    unchanged (module docstring), in place. Raises ConfigError for a gain <= 1 or a mask
    downsampler not ending in a 1x1 convolution."""
    if gain <= 1:
        raise ConfigError(f"memory-mask-gain: expected a gain > 1, got {gain}")
    layers = list(sam.memory_encoder.mask_downsampler.encoder)
    last = layers[-1]
    if not isinstance(last, torch.nn.Conv2d) or last.kernel_size != (1, 1):
        raise ConfigError(f"memory-mask-gain: the mask downsampler ends in {type(last).__name__}, not a 1x1 convolution")
    with torch.no_grad():
        size = sam.image_size
        activation = torch.zeros(1, 1, size, size, device=last.weight.device)
        for layer in layers[:-1]:
            activation = layer(activation)
        empty = activation[0, :, activation.shape[-2] // 2, activation.shape[-1] // 2]  # h0, away from the borders
        weight = last.weight[:, :, 0, 0]
        last.bias.copy_(last.bias - (gain - 1) * (weight @ empty))
        last.weight.mul_(gain)


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
