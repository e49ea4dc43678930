"""The exact GELU in the operation order onnxruntime fuses into one Gelu kernel.

GELU(x) = x Phi(x) = x (1 + erf(x / sqrt 2)) / 2 (Hendrycks & Gimpel, 2016). torch's ONNX exporter
writes `nn.GELU()` at opset 18 as Div -> Erf -> Add -> Mul(0.5) -> Mul(x), an order onnxruntime's
GeluFusion does not match, so every GELU ran as five element-wise passes (Erf, Div, Add, two Mul:
about 3 of 23 ms of the default's image encoder, one thread, profiled). Written as
(x (1 + erf(x / sqrt 2))) * 0.5 it matches (Div -> Erf -> Add -> Mul(x) -> Mul(0.5)), and the
result is the same number: multiplying by 0.5 is exact, wherever it happens.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn


class FusableGelu(nn.Module):
    """`nn.GELU()` (approximate="none") in onnxruntime's fused order; any shape."""

    def forward(self, x: Tensor) -> Tensor:
        return (x * (1.0 + torch.erf(x / math.sqrt(2.0)))) * 0.5


@contextmanager
def fusable_gelus(model: nn.Module) -> Iterator[int]:
    """Every exact `nn.GELU` submodule of `model` replaced by `FusableGelu` inside the `with`
    block (yields how many), put back afterwards; tanh-approximate GELUs are left alone."""
    swapped = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.GELU) and child.approximate == "none":
                swapped.append((parent, name, child))
                setattr(parent, name, FusableGelu())
    try:
        yield len(swapped)
    finally:
        for parent, name, child in swapped:
            setattr(parent, name, child)
