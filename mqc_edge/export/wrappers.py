"""The modules the exporter traces: the torch backend's own stages with exact rewrites.

The stages of `model/stages.py` and `model/mqc_stages.py` are traced as they are, except:
- memory attention (SAM 2 and DAMI) gets `kernels.rope.RealAxialRope` through its `rope` hook:
  sam2's RoPE multiplies complex tensors, which neither ONNX nor the torch.export-based
  exporter can express;
- SAM 2 memory attention and DAMI read values on 64 channels (`kernels.folded_readout`);
- Hiera's windowed blocks leave the window padding unprojected (`kernels.hiera_windows`);
- every exact GELU is written in the order onnxruntime fuses into one kernel (`kernels.gelu`).
The rewrites are exact in real arithmetic and cut FLOPs; the torch reference keeps Meta's code,
so the export's parity report measures every swap.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

from mqc_edge.kernels.folded_readout import folded_rope_attention
from mqc_edge.kernels.gelu import fusable_gelus
from mqc_edge.kernels.hiera_windows import unpadded_blocks
from mqc_edge.kernels.rope import RealAxialRope
from mqc_edge.model.mqc_sam import MQCSAM
from mqc_edge.model.stages import MemoryAttentionStage
from mqc_edge.model.torch_backend import TorchBackend


@contextmanager
def exportable_stages(backend: TorchBackend) -> Iterator[dict[str, nn.Module]]:
    """Stage name -> module to trace; DAMI's rope hook, Hiera's unpadded blocks and the fusable
    GELUs are set only inside the `with` block, so the backend's torch reference is unchanged
    afterwards."""
    model = backend.model
    sam = model.sam if isinstance(model, MQCSAM) else model
    rope = RealAxialRope([layer.cross_attn_image for layer in sam.memory_attention.layers], backend.geometry.feat_size)
    modules = {**backend.stages, "memory_attention": MemoryAttentionStage(sam, rope, folded_rope_attention)}
    dami = model.dami if isinstance(model, MQCSAM) else None
    trunk = sam.image_encoder.trunk
    meta_blocks = trunk.blocks
    trunk.blocks = unpadded_blocks(meta_blocks)
    if dami is not None:
        dami.rope, dami.fold_values = rope, True
    try:
        with fusable_gelus(model):
            yield modules
    finally:
        trunk.blocks = meta_blocks
        if dami is not None:
            dami.rope, dami.fold_values = None, False
