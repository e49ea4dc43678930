"""MoGA: memory-object-gated rank-1 adapters on the memory-attention Q/K/V projections.

After RobustPVOS: each cross-attention projection W of each memory-attention layer gets E rank-1
components u_e v_e^T, mixed per object by a gate computed from that object's pointer:

    W x  ->  W x + sum_e g_e(ptr) * u_e (v_e . x)

The up vectors u_e start at zero, so switching MoGA on leaves the model exactly as it was until
it is trained. The gate is a softmax over an MLP of the pointer; training adds Gaussian noise to
the gate logits (noisy gating, as in sparse mixture-of-experts) while inference is deterministic,
so the exported graph computes it from the pointer alone.
"""

from __future__ import annotations

import math

import torch
from torch import nn

class _Rank1Bank(nn.Module):
    """E rank-1 components for one projection (q, k or v) of every layer."""

    def __init__(self, num_layers: int, num_components: int, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.down = nn.Parameter(torch.randn(num_layers, num_components, in_dim) / math.sqrt(in_dim))
        self.up = nn.Parameter(torch.zeros(num_layers, num_components, out_dim))

    def delta(self, layer: int, x: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
        """x `[B, N, in]`, gates `[B, E]` -> `[B, N, out]`."""
        coefficients = torch.einsum("bni,ei->bne", x, self.down[layer]) * gates[:, None, :]
        return coefficients @ self.up[layer]


class MoGAAdapters(nn.Module):
    """Gated rank-1 adapters for the Q/K/V projections of SAM 2's memory-attention cross-attention."""

    def __init__(
        self,
        num_layers: int,
        query_dim: int,
        memory_dim: int,
        inner_dim: int,
        pointer_dim: int,
        num_components: int = 4,
        gate_hidden: int = 64,
        gate_noise_std: float = 1.0,
    ) -> None:
        super().__init__()
        self.gate_noise_std = gate_noise_std
        self.gate = nn.Sequential(
            nn.Linear(pointer_dim, gate_hidden), nn.ReLU(), nn.Linear(gate_hidden, num_components)
        )
        self.banks = nn.ModuleDict(
            {
                "q": _Rank1Bank(num_layers, num_components, query_dim, inner_dim),
                "k": _Rank1Bank(num_layers, num_components, memory_dim, inner_dim),
                "v": _Rank1Bank(num_layers, num_components, memory_dim, inner_dim),
            }
        )

    def gates(self, object_pointer: torch.Tensor) -> torch.Tensor:
        """Object pointer `[B, pointer_dim]` -> mixing weights `[B, E]` (sum to 1)."""
        logits = self.gate(object_pointer)
        if self.training and self.gate_noise_std > 0:
            logits = logits + torch.randn_like(logits) * self.gate_noise_std
        return logits.softmax(dim=-1)

    def delta(self, layer: int, projection: str, x: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
        """What the adapters add to projection `projection` ('q', 'k' or 'v') of layer `layer`."""
        return self.banks[projection].delta(layer, x, gates)
