"""The modules the exporter traces: the torch backend's own stages, RoPE made real-valued.

The stages of `model/stages.py` and `model/mqc_stages.py` are traced as they are, except that
memory attention (SAM 2 and DAMI) gets `kernels.rope.RealAxialRope` through its `rope` hook:
sam2's RoPE multiplies complex tensors, which neither ONNX nor the torch.export-based
exporter can express. The torch reference keeps Meta's complex RoPE, so parity measures the swap.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

from mqc_edge.kernels.rope import RealAxialRope
from mqc_edge.model.mqc_sam import MQCSAM
from mqc_edge.model.stages import MemoryAttentionStage
from mqc_edge.model.torch_backend import TorchBackend


@contextmanager
def exportable_stages(backend: TorchBackend) -> Iterator[dict[str, nn.Module]]:
    """Stage name -> module to trace; DAMI's rope hook is set only inside the `with` block,
    so the backend's torch reference is unchanged afterwards."""
    model = backend.model
    sam = model.sam if isinstance(model, MQCSAM) else model
    rope = RealAxialRope([layer.cross_attn_image for layer in sam.memory_attention.layers], backend.geometry.feat_size)
    modules = {**backend.stages, "memory_attention": MemoryAttentionStage(sam, rope)}
    dami = model.dami if isinstance(model, MQCSAM) else None
    if dami is not None:
        dami.rope = rope
    try:
        yield modules
    finally:
        if dami is not None:
            dami.rope = None
